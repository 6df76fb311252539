"""The concrete FHIR R4 resource types, as vendored from the official definitions, and those of them
that have a REST endpoint."""
from __future__ import annotations

import json
from importlib import resources

from .outcome import FHIRError

FHIR_VERSION = "4.0.1"

RESOURCE_TYPES: frozenset[str] = frozenset(
    json.loads(resources.files(__package__).joinpath("definitions/resource-types.json").read_text())["resourceTypes"]
)

# Every type but Parameters, which "is not persisted" and has "no RESTful endpoint associated with it"
# (http://hl7.org/fhir/R4/parameters.html): the types one can create, read, search, history, import,
# export and name in a Bundle entry's request.url, and the ones the CapabilityStatement lists.
REST_TYPES: frozenset[str] = RESOURCE_TYPES - {"Parameters"}


def require_rest_type(resource_type: str) -> None:
    """A request for [base]/[type]… of a type without an endpoint is 404 not-supported, whether it is no
    R4 type at all or Parameters."""
    if resource_type not in REST_TYPES:
        what = ("has no REST endpoint: a Parameters resource is never stored" if resource_type in RESOURCE_TYPES
                else "is not an R4 resource type")
        raise FHIRError.of(404, "not-supported", f"'{resource_type}' {what}")
