"""How the IPT layer reads other resources: a two-method port the store (or a test) implements.

Searches use only these standard R4 search parameters, all reference-typed, with a single
"Type/id" value each:
    ServiceRequest  based-on   (ServiceRequest.basedOn)
    Encounter       based-on   (Encounter.basedOn)
    Observation     based-on   (Observation.basedOn)
    CarePlan        goal       (CarePlan.goal)
    CarePlan        condition  (CarePlan.addresses)
    CarePlan        subject    (CarePlan.subject)
Within a transaction the implementation must see the transaction's own pending writes (with urn:uuid
references already resolved), so rules judge the resources as they will be stored.
"""
from __future__ import annotations

from collections.abc import Container, Iterable
from typing import Protocol, runtime_checkable

from .canonical import same_reference

SEARCH_PARAMS: dict[tuple[str, str], str] = {
    ("ServiceRequest", "based-on"): "basedOn",
    ("Encounter", "based-on"): "basedOn",
    ("Observation", "based-on"): "basedOn",
    ("CarePlan", "goal"): "goal",
    ("CarePlan", "condition"): "addresses",
    ("CarePlan", "subject"): "subject",
}


@runtime_checkable
class ResourceLookup(Protocol):
    # Within a transaction whose rules run on its final state: the resources ("Type/id") it writes after
    # the one being checked, which limits counted in write order (sessions of a plan) leave out.
    written_after: Container[str]

    def read(self, type: str, id: str) -> dict | None:
        """The current, not deleted version of type/id, or None."""

    def search(self, type: str, params: list[tuple[str, str]]) -> list[dict]:
        """Current resources of `type` matching all (name, value) params, FHIR search semantics."""


class InMemoryLookup:
    """A ResourceLookup over a list of resources: for tests, demo data checks, and transaction overlays."""

    def __init__(self, resources: Iterable[dict] = (), fallback: ResourceLookup | None = None) -> None:
        self.written_after: Container[str] = frozenset()
        self._by_key: dict[tuple[str, str], dict] = {}
        self._deleted: set[tuple[str, str]] = set()
        self._fallback = fallback
        for r in resources:
            self.put(r)

    def put(self, resource: dict) -> None:
        key = (resource["resourceType"], resource["id"])
        self._by_key[key] = resource
        self._deleted.discard(key)

    def delete(self, type: str, id: str) -> None:
        self._by_key.pop((type, id), None)
        self._deleted.add((type, id))

    def read(self, type: str, id: str) -> dict | None:
        key = (type, id)
        if key in self._by_key:
            return self._by_key[key]
        if key in self._deleted or self._fallback is None:
            return None
        return self._fallback.read(type, id)

    def search(self, type: str, params: list[tuple[str, str]]) -> list[dict]:
        found = {r["id"]: r for (t, _), r in self._by_key.items() if t == type and _matches(r, params)}
        if self._fallback is not None:
            for r in self._fallback.search(type, params):
                key = (type, r["id"])
                if key not in self._by_key and key not in self._deleted:
                    found[r["id"]] = r
        return [found[k] for k in sorted(found)]


def _matches(resource: dict, params: list[tuple[str, str]]) -> bool:
    for name, value in params:
        element = SEARCH_PARAMS.get((resource["resourceType"], name))
        if element is None:
            raise ValueError(f"search parameter {resource['resourceType']}:{name} is not supported here")
        refs = resource.get(element) or []
        if isinstance(refs, dict):  # a single Reference (CarePlan.subject)
            refs = [refs]
        if not any(same_reference(r, value) for r in refs):
            return False
    return True


def resources_from_transaction(bundle: dict) -> list[dict]:
    """The resources of a transaction Bundle as the server would store them for POSTs with urn:uuid
    fullUrls: each gets the uuid as id and urn:uuid references become Type/id. For checking a
    Bundle with the rules and progress code without a store (tests, demo data)."""
    ids: dict[str, str] = {}
    for entry in bundle.get("entry") or []:
        full_url, resource = entry.get("fullUrl"), entry.get("resource") or {}
        if isinstance(full_url, str) and full_url.startswith("urn:uuid:") and resource.get("resourceType"):
            ids[full_url] = f"{resource['resourceType']}/{full_url[len('urn:uuid:'):]}"

    def rewrite(value):
        if isinstance(value, dict):
            out = {k: rewrite(v) for k, v in value.items()}
            if isinstance(out.get("reference"), str) and out["reference"] in ids:
                out["reference"] = ids[out["reference"]]
            return out
        if isinstance(value, list):
            return [rewrite(v) for v in value]
        return value

    out = []
    for entry in bundle.get("entry") or []:
        resource = rewrite(entry.get("resource") or {})
        full_url = entry.get("fullUrl")
        if full_url in ids:
            resource = {"resourceType": resource["resourceType"], "id": ids[full_url].split("/", 1)[1],
                        **{k: v for k, v in resource.items() if k != "resourceType"}}
        out.append(resource)
    return out
