"""The vendored R4 definitions (written by scripts/vendor_definitions.py), loaded once on first use."""
from __future__ import annotations

import gzip
import json
from functools import lru_cache
from importlib import resources

_PACKAGE = "ipt_fhir.fhir.definitions"


def _load(name: str) -> dict:
    with resources.files(_PACKAGE).joinpath(name).open("rb") as f:
        return json.loads(gzip.decompress(f.read()))


@lru_cache(maxsize=1)
def structures() -> dict:
    return _load("validation-structures.json.gz")


@lru_cache(maxsize=1)
def value_sets() -> dict:
    return _load("validation-valuesets.json.gz")


@lru_cache(maxsize=1)
def known_resource_types() -> frozenset[str]:
    """Every concrete R4 resource type (abstract Resource and DomainResource excluded)."""
    return frozenset(
        name for name, t in structures()["types"].items() if t["kind"] == "resource" and not t["abstract"]
    )


@lru_cache(maxsize=1)
def primitive_types() -> frozenset[str]:
    return frozenset(structures()["primitives"])
