"""The IPT layer wired into the server: write hook (rules, read model, narrative), conformance
resources (validator registration, read-only serving) and the $apply / $ipt-progress operations."""
from __future__ import annotations

from ipt_fhir.services import write_hooks

from . import conformance
from .hook import HOOK, IptWriteHook
from .operations import IptService

# (resource type, operation name, OperationDefinition canonical: absolute, or relative to our base)
OPERATIONS = (
    # Our own definition: HL7's PlanDefinition-apply returns a CarePlan, ours a Bundle (domain/apply.py)
    ("PlanDefinition", "apply", "OperationDefinition/ipt-apply"),
    ("CarePlan", "ipt-progress", "OperationDefinition/ipt-progress"),
)


def install(canonical_base: str) -> conformance.ConformanceRegistry:
    """Register the IPT profiles, code systems and value sets with the validator, serve them, and
    register the write hook. Idempotent (create_app may run many times in one process)."""
    registry = conformance.install(canonical_base)
    write_hooks.register(HOOK)
    return registry


def capability_operations(canonical_base: str) -> dict[str, list[dict]]:
    """CapabilityStatement.rest.resource.operation entries of the IPT layer, by resource type."""
    base = canonical_base.rstrip("/")
    out: dict[str, list[dict]] = {}
    for resource_type, name, url in OPERATIONS:
        out.setdefault(resource_type, []).append(
            {"name": name, "definition": url if url.startswith("http") else f"{base}/{url}"})
    return out


__all__ = ["HOOK", "IptService", "IptWriteHook", "capability_operations", "conformance", "install"]
