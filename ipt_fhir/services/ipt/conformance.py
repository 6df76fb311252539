"""The IPT conformance resources (CodeSystems, ValueSets, StructureDefinitions, PlanDefinitions,
OperationDefinitions): registered with the validator at startup, and stored (publish.py) so that they are
read, searched and versioned as any resource is. They come with the code and IPT_FHIR_CANONICAL_BASE;
writes to their ids or canonical URLs are refused (hook._check_conformance_write).
"""
from __future__ import annotations

from functools import lru_cache

from ipt_fhir.domain.conformance_loader import CONFORMANCE_TYPES, ipt_profile_urls, load_conformance
from ipt_fhir.fhir.validation import register_code_system, register_profile, register_value_set


class ConformanceRegistry:
    """The IPT conformance resources under one canonical base."""

    def __init__(self, canonical_base: str) -> None:
        self.canonical_base = canonical_base.rstrip("/")
        self.resources: dict[tuple[str, str], dict] = {}
        for r in load_conformance(self.canonical_base):
            self.resources[(r["resourceType"], r["id"])] = r  # load_conformance hands out copies
        self.urls = {r["url"]: key for key, r in self.resources.items() if r.get("url")}
        # Ids no client-written conformance resource may take (any of these types).
        self.reserved_ids = frozenset(rid for _, rid in self.resources)

    def register_with_validator(self) -> None:
        for (rtype, _), r in self.resources.items():
            if rtype == "CodeSystem":
                register_code_system(r)
            elif rtype == "ValueSet":
                register_value_set(r)
        for (rtype, _), r in self.resources.items():  # extensions first: loader order is kept
            if rtype == "StructureDefinition":
                register_profile(r)

    def profile_urls(self) -> dict[str, list[str]]:
        return {rtype: [url] for rtype, url in ipt_profile_urls(self.canonical_base).items()}

    def owns(self, resource_type: str, resource_id: str) -> bool:
        return (resource_type, resource_id) in self.resources

    def claims_url(self, url: object) -> bool:
        return isinstance(url, str) and url.split("|", 1)[0] in self.urls


@lru_cache(maxsize=8)
def registry(canonical_base: str) -> ConformanceRegistry:
    return ConformanceRegistry(canonical_base)


# The ids of the server's own resources, for the write-refusing route (the ids do not depend on the base).
RESERVED_ID_PATTERN = "|".join(sorted({r["id"] for r in load_conformance()}, key=len, reverse=True))
TYPE_PATTERN = "|".join(CONFORMANCE_TYPES)

_active: ConformanceRegistry | None = None


def install(canonical_base: str) -> ConformanceRegistry:
    """Register the IPT conformance resources with the validator and make them the active set (the ids
    and canonical URLs writes are refused, publish.py's content)."""
    global _active
    reg = registry(canonical_base.rstrip("/"))
    reg.register_with_validator()
    _active = reg
    return reg


def active() -> ConformanceRegistry | None:
    return _active


def is_published(resource_type: str, resource_id: str) -> bool:
    """Whether Type/id is one of the IPT conformance resources this server publishes (read-only)."""
    return _active is not None and _active.owns(resource_type, resource_id)
