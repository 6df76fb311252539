"""The IPT layer wired into the server: write hook (rules, read model, narrative), conformance
resources (validator registration, read-only serving) and the $apply / $ipt-progress operations."""
from __future__ import annotations

from ipt_fhir.services import write_hooks

from . import conformance
from .hook import HOOK, IptWriteHook
from .operations import IptService

OPERATIONS = (
    ("apply", "http://hl7.org/fhir/OperationDefinition/PlanDefinition-apply"),
    ("ipt-progress", "OperationDefinition/ipt-progress"),
)


def install(canonical_base: str) -> conformance.ConformanceRegistry:
    """Register the IPT profiles, code systems and value sets with the validator, serve them, and
    register the write hook. Idempotent (create_app may run many times in one process)."""
    registry = conformance.install(canonical_base)
    write_hooks.register(HOOK)
    return registry


def capability_operations(canonical_base: str) -> list[dict]:
    base = canonical_base.rstrip("/")
    return [{"name": name, "definition": url if url.startswith("http") else f"{base}/{url}"}
            for name, url in OPERATIONS]


__all__ = ["HOOK", "IptService", "IptWriteHook", "capability_operations", "conformance", "install"]
