"""Load the IPT conformance resources (one JSON file each, in ./conformance) under the configured base.

The files are authored under DEFAULT_CANONICAL_BASE; every string starting with that base is rewritten,
so URLs, valueSet bindings, extension urls, profile targets and code systems all move together.
"""
from __future__ import annotations

import copy
import json
from functools import lru_cache
from importlib import resources
from typing import Any

from .canonical import DEFAULT_CANONICAL_BASE

CONFORMANCE_TYPES = ("CodeSystem", "ValueSet", "StructureDefinition", "PlanDefinition", "OperationDefinition")


@lru_cache(maxsize=1)
def _authored() -> tuple[str, ...]:
    folder = resources.files(__package__).joinpath("conformance")
    texts = [f.read_text(encoding="utf-8") for f in sorted(folder.iterdir(), key=lambda p: p.name) if f.name.endswith(".json")]
    return tuple(texts)


def _rebase(value: Any, base: str) -> Any:
    if isinstance(value, str):
        if value == DEFAULT_CANONICAL_BASE or value.startswith(DEFAULT_CANONICAL_BASE + "/"):
            return base + value[len(DEFAULT_CANONICAL_BASE):]
        return value
    if isinstance(value, list):
        return [_rebase(v, base) for v in value]
    if isinstance(value, dict):
        return {k: _rebase(v, base) for k, v in value.items()}
    return value


def load_conformance(canonical_base: str = DEFAULT_CANONICAL_BASE) -> list[dict]:
    """All IPT CodeSystems, ValueSets, StructureDefinitions and PlanDefinitions, fresh dicts each call.

    Order: CodeSystems, ValueSets, extension StructureDefinitions, profiles, PlanDefinitions, so a
    validator can register them in the order returned.
    """
    return copy.deepcopy(list(_loaded(canonical_base.rstrip("/"))))


@lru_cache(maxsize=8)
def _loaded(base: str) -> tuple[dict, ...]:
    loaded = [_rebase(json.loads(text), base) for text in _authored()]

    def order(r: dict) -> tuple[int, int, str]:
        extension_first = 0 if r.get("type") == "Extension" else 1
        return (CONFORMANCE_TYPES.index(r["resourceType"]), extension_first, r["id"])

    return tuple(sorted(loaded, key=order))


def conformance_by_type(canonical_base: str = DEFAULT_CANONICAL_BASE) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {t: [] for t in CONFORMANCE_TYPES}
    for r in load_conformance(canonical_base):
        out[r["resourceType"]].append(r)
    return out


def ipt_profile_urls(canonical_base: str = DEFAULT_CANONICAL_BASE) -> dict[str, str]:
    """resource type -> IPT profile URL, for CapabilityStatement.rest.resource.supportedProfile."""
    out: dict[str, str] = {}
    for r in load_conformance(canonical_base):
        if r["resourceType"] == "StructureDefinition" and r.get("kind") == "resource":
            out[r["type"]] = r["url"]
    return out


def plan_definition(id_or_url: str, canonical_base: str = DEFAULT_CANONICAL_BASE) -> dict | None:
    key = id_or_url.split("|", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    for r in _loaded(canonical_base.rstrip("/")):
        if r["resourceType"] == "PlanDefinition" and r["id"] == key:
            return copy.deepcopy(r)
    return None
