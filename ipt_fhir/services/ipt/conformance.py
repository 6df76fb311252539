"""The IPT conformance resources (CodeSystems, ValueSets, StructureDefinitions, PlanDefinitions):
registered with the validator at startup and served read-only from memory.

Why from memory and not from the store: they are part of the deployed code (they change with a
release and with IPT_FHIR_CANONICAL_BASE, never through the API), like /metadata. Upserting them into
the store would put server-owned entries into every database's _history and let them drift from the
code. Reads, vreads and searches on the four types merge them with any conformance resources clients
stored themselves; writes to their ids or canonical URLs are refused.
"""
from __future__ import annotations

import copy
import unicodedata
from datetime import datetime, timezone
from functools import lru_cache

from ipt_fhir.domain.conformance_loader import CONFORMANCE_TYPES, ipt_profile_urls, load_conformance
from ipt_fhir.fhir.jsonio import dump_json
from ipt_fhir.fhir.validation import register_code_system, register_profile, register_value_set
from ipt_fhir.store.resources import StoredVersion



def _package_date() -> datetime:
    """When the package last changed: the newest `date` of its resources, at midnight UTC. Their
    meta.lastUpdated and Last-Modified (and so If-Modified-Since) stay the same from one start of the
    server to the next, and move only with a package that changes."""
    dates = [r["date"][:10] for r in load_conformance() if isinstance(r.get("date"), str)]  # any base: same dates
    newest = max(dates, default="2025-01-01")
    return datetime.fromisoformat(newest).replace(tzinfo=timezone.utc)


LOADED_AT = _package_date()
_LOADED_AT = LOADED_AT.strftime("%Y-%m-%dT%H:%M:%S.000+00:00")

# Search parameters evaluated for the in-memory resources (all types): name -> element, kind.
_PARAMS: dict[str, tuple[str, str]] = {
    "_id": ("id", "token"), "url": ("url", "uri"), "name": ("name", "string"), "status": ("status", "token"),
    "version": ("version", "token"), "title": ("title", "string"), "publisher": ("publisher", "string"),
    "type": ("type", "token"), "kind": ("kind", "token"), "derivation": ("derivation", "token"),
}
# Result and format parameters: they shape the Bundle, not the match.
RESULT_PARAMS = frozenset({"_count", "_sort", "_summary", "_elements", "_total", "_include", "_revinclude",
                           "_format", "_pretty", "_contained", "_containedType", "_page"})


class ConformanceRegistry:
    """The IPT conformance resources under one canonical base."""

    def __init__(self, canonical_base: str) -> None:
        self.canonical_base = canonical_base.rstrip("/")
        self.resources: dict[tuple[str, str], dict] = {}
        for r in load_conformance(self.canonical_base):
            served = copy.deepcopy(r)
            served["meta"] = {**(r.get("meta") or {}), "versionId": "1", "lastUpdated": _LOADED_AT}
            # Keep resourceType, id, meta first as the store does.
            ordered = {"resourceType": served["resourceType"], "id": served["id"], "meta": served["meta"]}
            ordered.update({k: v for k, v in served.items() if k not in ordered})
            self.resources[(r["resourceType"], r["id"])] = ordered
        self.urls = {r["url"]: key for key, r in self.resources.items() if r.get("url")}
        # Ids no stored conformance resource may take (any of the four types): /fhir/[type]/[id] for
        # these ids is answered from memory.
        self.reserved_ids = frozenset(rid for _, rid in self.resources)
        self._bytes = {key: dump_json(r) for key, r in self.resources.items()}

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

    def content(self, resource_type: str, resource_id: str) -> bytes | None:
        return self._bytes.get((resource_type, resource_id))

    def get(self, resource_type: str, resource_id: str) -> dict | None:
        return self.resources.get((resource_type, resource_id))

    def version(self, resource_type: str, resource_id: str) -> StoredVersion | None:
        """The in-memory resource as the one version it has (versionId 1, lastUpdated LOADED_AT), so that
        it is read, and read in bundles, exactly as a stored resource is."""
        content = self._bytes.get((resource_type, resource_id))
        return None if content is None else StoredVersion(resource_type, resource_id, 1, LOADED_AT, False, content)

    def claims_url(self, url: object) -> bool:
        return isinstance(url, str) and url.split("|", 1)[0] in self.urls

    def search(self, resource_type: str, params: list[tuple[str, str]]) -> list[dict] | None:
        """The in-memory resources of `resource_type` matching all params (AND; commas OR), in id order.
        None when a parameter or modifier is not evaluated here (the caller then leaves them out)."""
        if resource_type not in CONFORMANCE_TYPES:
            return []
        tests = []
        for name, value in params:
            if name in RESULT_PARAMS:
                continue
            base, _, modifier = name.partition(":")
            spec = _PARAMS.get(base)
            if spec is None or modifier not in _MODIFIERS[spec[1]]:
                return None
            tests.append((spec, modifier, [v for v in value.split(",")]))
        out = []
        for (rtype, _), r in sorted(self.resources.items()):
            if rtype == resource_type and all(_matches(r.get(el), kind, mod, values)
                                              for (el, kind), mod, values in tests):
                out.append(r)
        return out


_MODIFIERS = {"token": {"", "not"}, "uri": {"", "below", "above"}, "string": {"", "exact", "contains"}}


def _norm(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)).casefold()


def _matches(actual: object, kind: str, modifier: str, values: list[str]) -> bool:
    if not isinstance(actual, str):
        return modifier == "not"
    if kind == "token":
        hit = any((v.split("|", 1)[-1] if "|" in v else v) == actual for v in values)
        return not hit if modifier == "not" else hit
    if kind == "uri":
        if modifier == "below":
            return any(actual.startswith(v) for v in values)
        if modifier == "above":
            return any(v.startswith(actual) for v in values)
        return any(actual == v for v in values)
    a = _norm(actual)
    if modifier == "exact":
        return any(actual == v for v in values)
    if modifier == "contains":
        return any(_norm(v) in a for v in values)
    return any(a.startswith(_norm(v)) for v in values)


@lru_cache(maxsize=8)
def registry(canonical_base: str) -> ConformanceRegistry:
    return ConformanceRegistry(canonical_base)


# The id pattern of the in-memory resources, for the routes (the ids do not depend on the base).
RESERVED_ID_PATTERN = "|".join(sorted({r["id"] for r in load_conformance()}, key=len, reverse=True))
TYPE_PATTERN = "|".join(CONFORMANCE_TYPES)

_active: ConformanceRegistry | None = None


def install(canonical_base: str) -> ConformanceRegistry:
    """Register the IPT conformance resources with the validator and make them the served set."""
    global _active
    reg = registry(canonical_base.rstrip("/"))
    reg.register_with_validator()
    _active = reg
    return reg


def active() -> ConformanceRegistry | None:
    return _active


def published(resource_type: str, resource_id: str) -> StoredVersion | None:
    """One of the IPT profiles, code systems or protocols the server publishes from memory, as version 1."""
    return _active.version(resource_type, resource_id) if _active is not None else None


def published_matches(resource_type: str, criteria: list[tuple[str, str]]) -> list[StoredVersion]:
    """The resources this server publishes from memory that the criteria of a conditional create,
    update, patch or delete match. [] when none is served, the type is none of theirs, or a criterion
    cannot be evaluated here (the store alone answers then, as for any other type)."""
    if _active is None:
        return []
    return [_active.version(resource_type, r["id"]) for r in _active.search(resource_type, criteria) or []]
