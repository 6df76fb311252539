"""Reading a Parameters resource (http://hl7.org/fhir/R4/parameters.html), the body of operations."""
from __future__ import annotations

from collections.abc import Collection
from typing import Any

from .outcome import bad_request


def parameter_value(parameter: dict) -> Any:
    """The value[x] of one `Parameters.parameter` (valueString, valueReference, ...), or None: the
    element's JSON name is `value` followed by its type's name, so `value` alone is not one."""
    for key, value in parameter.items():
        if key.startswith("value") and key[5:6].isupper():
            return value
    return None


def primitive_parameters(body: object, references: Collection[str] = ()) -> list[tuple[str, str]]:
    """A Parameters body as (name, value) pairs, each value as a URL would carry it: the operations served
    here take primitive parameters only, so anything else is a 400 naming the element. `references`: the
    parameters the operation takes as a Reference; a valueReference of one is read as its literal
    reference (one without, an identifier only, is refused: it would read as an empty value)."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        sent = body.get("resourceType") if isinstance(body, dict) else None
        raise bad_request("The body of an operation invoked with POST must be a Parameters resource",
                          f"{sent}.resourceType" if isinstance(sent, str) and sent else "Parameters",
                          code="structure")
    parameters = body.get("parameter") or []
    if not isinstance(parameters, list):
        raise bad_request("Parameters.parameter must be an array", "Parameters.parameter", code="structure")
    pairs = []
    for index, parameter in enumerate(parameters):
        where = f"Parameters.parameter[{index}]"
        value = parameter_value(parameter) if isinstance(parameter, dict) else None
        if not isinstance(parameter, dict) or not isinstance(parameter.get("name"), str):
            raise bad_request("A parameter needs a name", where, code="structure")
        if parameter["name"] in references and isinstance(value, dict) and "valueReference" in parameter:
            value = value.get("reference")
            if not isinstance(value, str) or not value:
                raise bad_request(f"Parameter {parameter['name']} needs a literal reference", where,
                                  code="not-supported")
        if isinstance(value, bool):
            pairs.append((parameter["name"], "true" if value else "false"))
        elif isinstance(value, (str, int, float)):
            pairs.append((parameter["name"], str(value)))
        else:
            raise bad_request(f"Parameter {parameter['name']} needs a primitive value[x]; this operation takes "
                              "no resources, parts or complex values", where, code="not-supported")
    return pairs
