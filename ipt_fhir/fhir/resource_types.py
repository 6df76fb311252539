"""The concrete FHIR R4 resource types, as vendored from the official definitions."""
from __future__ import annotations

import json
from importlib import resources

FHIR_VERSION = "4.0.1"

RESOURCE_TYPES: frozenset[str] = frozenset(
    json.loads(resources.files(__package__).joinpath("definitions/resource-types.json").read_text())["resourceTypes"]
)
