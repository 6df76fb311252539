"""Strict FHIR R4 validation driven by the official StructureDefinitions and ValueSets.

validate_resource: base spec (shape, primitives, cardinality, choices, required bindings, invariants,
contained rules); errors there make a request a 400. validate_envelope: the same for a batch or
transaction Bundle's own elements, its entries' resources left out (they are validated entry by entry);
the Bundle invariants are bundle_processing.bundle_invariant_issues, in one pass over the entries.
validate_profiles: the profiles a resource claims (or that are named), as far as the server knows them;
errors there make a request a 422.
"""
from __future__ import annotations

from .definitions import known_resource_types
from .engine import validate_envelope, validate_resource
from .profiles import can_check, register_profile, validate_profiles
from .terminology import register_code_system, register_value_set

__all__ = [
    "can_check",
    "known_resource_types",
    "register_code_system",
    "register_profile",
    "register_value_set",
    "validate_envelope",
    "validate_profiles",
    "validate_resource",
]
