"""Reading a Parameters resource (http://hl7.org/fhir/R4/parameters.html), the body of operations."""
from __future__ import annotations

from typing import Any


def parameter_value(parameter: dict) -> Any:
    """The value[x] of one `Parameters.parameter` (valueString, valueReference, ...), or None: the
    element's JSON name is `value` followed by its type's name, so `value` alone is not one."""
    for key, value in parameter.items():
        if key.startswith("value") and key[5:6].isupper():
            return value
    return None
