"""Recorded behaviour of the write path's pure steps, to prove optimisations change nothing.

The cases: every official R4 example (resources and bundles), every Synthea resource, the benchmark's
IPT CarePlan and an IPT symptom score, plus deterministic mutations of all of them (wrong JSON types,
bad primitive values, unknown and missing elements, broken references, primitive extensions, ...) so
the error paths are covered too, and byte-level variants for the JSON parser (whitespace, duplicate
keys, decimals, escapes). For each case the outcome of parse_json, validate_resource,
validate_profiles and index_rows is reduced to a short digest of an exact, type-tagged rendering
(FhirDecimal text, float repr, issue severity/code/diagnostics/expressions, every index row).

    .venv/bin/python -m tests.fhir.write_path_golden   # re-record (only when behaviour SHOULD change)

The recording lives in write_path_golden.json.gz beside this file; test_write_path_equivalence.py
compares against it.
"""
from __future__ import annotations

import copy
import gzip
import hashlib
import json
import random
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import orjson

from ipt_fhir.fhir.jsonio import FhirDecimal, parse_json
from ipt_fhir.fhir.outcome import FHIRError

HERE = Path(__file__).resolve().parent
RECORDING = HERE / "write_path_golden.json.gz"
SHARED = HERE.parents[1] / ".." / "shared" / "fixtures"
EXAMPLES = SHARED / "hl7-r4-examples"
SYNTHEA = SHARED / "synthea"
IPT_BASE = "http://ipt-fhir.org/fhir"


def register_ipt() -> None:
    """The IPT profiles and terminology, registered as create_app() does."""
    from ipt_fhir.services.ipt.conformance import ConformanceRegistry

    ConformanceRegistry(IPT_BASE).register_with_validator()


# ------------------------------------------------------------------------------------------ inputs

def _ipt_resources() -> list[tuple[str, bytes]]:
    from benchmarks.payloads import careplan

    plan = careplan("x")
    claimed = copy.deepcopy(plan)
    claimed["meta"] = {"profile": [f"{IPT_BASE}/StructureDefinition/ipt-careplan"]}
    score = {
        "resourceType": "Observation",
        "meta": {"profile": [f"{IPT_BASE}/StructureDefinition/ipt-symptom-score"]},
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "survey"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "44261-6"}]},
        "subject": {"reference": "Patient/maria"}, "basedOn": [{"reference": "CarePlan/p1"}],
        "encounter": {"reference": "Encounter/e1"}, "effectiveDateTime": "2025-03-03T09:50:00Z",
        "valueQuantity": {"value": 19, "unit": "{score}", "system": "http://unitsofmeasure.org", "code": "{score}"},
    }
    return [("ipt:careplan", json.dumps(plan).encode()), ("ipt:careplan-claimed", json.dumps(claimed).encode()),
            ("ipt:score", json.dumps(score).encode())]


@lru_cache(maxsize=1)
def sources() -> list[tuple[str, bytes]]:
    """(name, bytes) of every base input: examples, Synthea bundles and NDJSON lines, IPT resources."""
    out = [(f"hl7:{p.name}", p.read_bytes()) for d in ("resources", "bundles")
           for p in sorted((EXAMPLES / d).glob("*.json"))]
    for p in sorted((SYNTHEA / "bundles").glob("*.json.gz")):
        out.append((f"synthea:{p.name[:24]}", gzip.decompress(p.read_bytes())))
    for p in sorted((SYNTHEA / "bulk-ndjson-10-patients").glob("*.ndjson.gz")):
        if not p.name.startswith("log"):
            lines = [ln for ln in gzip.decompress(p.read_bytes()).splitlines() if ln.strip()]
            # every fifth line: the Synthea bundles above hold the same kinds of resource in full
            out.extend((f"ndjson:{p.name}:{i}", ln) for i, ln in enumerate(lines) if i % 5 == 0)
    return out + _ipt_resources()


def _paths(value: Any, path: tuple = ()) -> Iterator[tuple]:
    yield path
    if type(value) is dict:
        for k, v in value.items():
            yield from _paths(v, path + (k,))
    elif type(value) is list:
        for i, v in enumerate(value):
            yield from _paths(v, path + (i,))


_ODD_VALUES = ["", "x", 12, -3, 0, 2**40, FhirDecimal("1.50"), FhirDecimal("1e3"), True, False, None, [], {},
               ["a"], {"a": 1}, [None], "bad value!!", "2020-02-30", "2021-13-01T10:00:00Z", "2024-02-29",
               "12:61:00", "urn:uuid:not-a-uuid", "Patient/1", "Foo/1", "#missing", "a\x01b", " lead",
               "http://example.org/x", "<div>x</div>", "QUJD", "QUJ", "9" * 12, "-", "en-US",
               {"extension": [{"url": "http://x", "valueString": "y"}]}, {"id": "only-id"}]


def _mutate(doc: Any, rng: random.Random) -> Any:
    """One structural or value mutation at a random place of a deep copy."""
    doc = copy.deepcopy(doc)
    paths = list(_paths(doc))[1:]
    if not paths:
        return doc
    path = rng.choice(paths)
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    op = rng.randrange(9)
    if op == 0 and type(parent) is dict:
        del parent[last]
    elif op == 1 and type(parent) is dict:
        parent[f"unknownThing{rng.randrange(3)}"] = rng.choice(_ODD_VALUES)
    elif op == 2 and type(parent) is dict and type(last) is str and not last.startswith("_"):
        parent["_" + last] = rng.choice([{"extension": [{"url": "http://x", "valueBoolean": True}]}, {}, [None], 3,
                                         [{"id": "a"}], {"id": "b"}])
    elif op == 3:
        v = parent[last]
        parent[last] = [v] if type(v) is not list else (v[0] if v else None)
    elif op == 4 and type(parent) is dict:
        # a sibling choice variant or a known key with an odd value
        parent[rng.choice(["valueString", "valueBoolean", "effectivePeriod", "status", "reference", "id",
                           "extension", "text", "contained", "meta", "code", "system", "div", "start", "end"])] = \
            rng.choice(_ODD_VALUES)
    else:
        parent[last] = copy.deepcopy(rng.choice(_ODD_VALUES))
    return doc


def _text_variants(name: str, raw: bytes, rng: random.Random) -> Iterator[tuple[str, bytes]]:
    """Byte-level variants for the JSON parser."""
    text = raw.decode("utf-8", "replace")
    yield "spaced", text.replace('":', '" :', 1).encode()
    yield "dup", text.replace("{", '{"resourceType":"Dup",', 1).encode()
    yield "dup-nested", text.replace('{"', '{"k\\\\":1,"k\\\\":2,"', 2).encode()
    yield "decimal", text.replace("{", '{"zz":[1.50, 2e-3, -0.0],', 1).encode()
    yield "escaped", text.replace("{", '{"q\\"":"a\\":\\"b\\":","surrogate":"\\ud83d\\ude00",', 1).encode()
    yield "lone-surrogate", text.replace("{", '{"s":"\\ud800",', 1).encode()
    yield "bom", "\ufeff".encode() + raw
    cut = rng.randrange(1, max(2, len(raw)))
    yield "truncated", raw[:cut]
    yield "deep", b"[" * 65 + b"1" + b"]" * 65


MUTATIONS = 6


def shard_of(name: str, shards: int) -> int:
    return int(hashlib.sha256(name.encode()).hexdigest(), 16) % shards


def cases(shard: int = 0, shards: int = 1) -> Iterator[tuple[str, str, Any]]:
    """(name, kind, payload): kind 'bytes' goes through every step, 'doc' skips parsing, 'parse' is
    parsing only."""
    for name, raw in sources():
        if shard_of(name, shards) != shard:
            continue
        rng = random.Random(name)
        yield name, "bytes", raw
        for label, variant in _text_variants(name, raw, rng):
            if name.startswith("ndjson:") and label not in ("dup", "decimal"):
                continue  # a thousand lines: the byte variants of the examples cover the rest
            # Synthea bundles are large: their byte variants only exercise the parser
            yield f"{name}#{label}", "parse" if name.startswith("synthea:") else "bytes", variant
        try:
            doc = parse_json(raw)
        except FHIRError:
            continue
        n = 1 if name.startswith("synthea:") else 2 if name.startswith("ndjson:") else MUTATIONS
        for i in range(n):
            mutated = doc
            for _ in range(1 + (i % 3)):
                mutated = _mutate(mutated, rng)
            yield f"{name}~{i}", "doc", mutated


# ------------------------------------------------------------------------------------------ outcomes

def canon(value: Any) -> Any:
    """A JSON-able, type-tagged rendering: 1, 1.0, FhirDecimal('1.0'), True and '1' all differ."""
    kind = type(value)
    if kind is dict:
        return ["d", [[k, canon(v)] for k, v in value.items()]]
    if kind is list or kind is tuple:
        return ["l" if kind is list else "t", [canon(v) for v in value]]
    if kind is FhirDecimal:
        return ["D", value.text]
    if kind is float:
        return ["f", repr(value)]
    if kind is bool:
        return ["b", value]
    if kind is int:
        return ["i", str(value)]
    if value is None:
        return None
    if kind is str:
        return value
    return ["?", kind.__name__, repr(value)]


def _issues(issues: list) -> list:
    return [[i.severity, i.code, i.diagnostics, list(i.expression)] for i in issues]


def _digest(value: Any) -> str:
    return hashlib.sha256(orjson.dumps(value)).hexdigest()[:20]


def _guard(fn: Any) -> Any:
    try:
        return fn()
    except FHIRError as exc:
        return ["FHIRError", exc.status, _issues(exc.issues)]
    except Exception as exc:  # noqa: BLE001 - an exception is an outcome too
        return ["raised", type(exc).__name__, str(exc)]


def _resources_of(doc: Any) -> list[dict]:
    """The resource itself and, for Bundles, each entry's resource (what a transaction would index)."""
    out = [doc] if type(doc) is dict and type(doc.get("resourceType")) is str else []
    if out and doc["resourceType"] == "Bundle" and type(doc.get("entry")) is list:
        out += [e["resource"] for e in doc["entry"] if type(e) is dict and type(e.get("resource")) is dict
                and type(e["resource"].get("resourceType")) is str]
    return out


def outcome(kind: str, payload: Any) -> dict[str, str]:
    from ipt_fhir.fhir.search.indexer import index_rows
    from ipt_fhir.fhir.validation import known_resource_types, validate_profiles, validate_resource

    result: dict[str, str] = {}
    if kind in ("bytes", "parse"):
        parsed = _guard(lambda: canon(parse_json(payload)))
        result["parse"] = _digest(parsed)
        if kind == "parse" or (type(parsed) is list and parsed[0] in ("FHIRError", "raised")):
            return result
        doc = parse_json(payload)
    else:
        doc = payload
    # recorded as imports and Bundle entries validate: conditional references allowed (they resolve them)
    result["validate"] = _digest(_guard(lambda: _issues(validate_resource(doc, conditional_references=True))))
    if type(doc) is dict:
        result["profiles"] = _digest(_guard(lambda: _issues(validate_profiles(doc))))
    rows = []
    for r in _resources_of(doc):
        rt = r["resourceType"]
        if rt in known_resource_types():
            rows.append(_guard(lambda: canon(composites_as_recorded(points_as_recorded(
                with_alias_rows(rt, index_rows(rt, r)))))))
    if rows:
        result["index"] = _digest(rows)
    return result


def with_alias_rows(resource_type: str, rows: dict[str, list[tuple]]) -> dict[str, list[tuple]]:
    """The rows as recorded, when every reference alias still had rows of its own: its base's rows with
    its target type, in the place its code sorts to (index_rows emits parameters in code order). So
    the recording also proves an alias's base rows narrowed to its type are exactly its former rows."""
    from ipt_fhir.fhir.search.registry import registry

    aliases = registry().aliases.get(resource_type, {})
    if not aliases:
        return rows
    groups: dict[str, list[tuple]] = {}
    for row in rows["reference"]:
        groups.setdefault(row[0], []).append(row)
    for code, (base, target_type) in aliases.items():
        narrowed = [(code, *row[1:]) for row in groups.get(base, []) if row[1] == target_type]
        if narrowed:
            groups[code] = narrowed
    return {**rows, "reference": [row for code in sorted(groups) for row in groups[code]]}


def points_as_recorded(rows: dict[str, list[tuple]]) -> dict[str, list[tuple]]:
    """The rows as recorded when number and quantity rows were points: the range [n, n] of a number or
    Quantity as its value n alone. So the recording also proves that points index exactly as before;
    a Range's rows (low < high) are new, recorded as they are."""
    def point(row: tuple) -> tuple:
        return (row[0], row[1], *row[3:]) if row[1] == row[2] else row

    return {**rows, "number": [point(r) for r in rows["number"]], "quantity": [point(r) for r in rows["quantity"]]}


def composites_as_recorded(rows: dict[str, list[tuple]]) -> dict[str, list[tuple]]:
    """The rows as recorded before a composite whose element has no value for every component got one
    valueless row (its code, then NULLs), which only `:missing` reads. So the recording also proves that
    every composite row with values is exactly as before."""
    return {**rows, "composite": [r for r in rows["composite"] if any(v is not None for v in r[1:])]}


def compute() -> dict[str, dict[str, str]]:
    register_ipt()
    return {name: outcome(kind, payload) for name, kind, payload in cases()}


if __name__ == "__main__":
    recorded = compute()
    RECORDING.write_bytes(gzip.compress(json.dumps(recorded, indent=0, sort_keys=True).encode(), mtime=0))
    print(f"recorded {len(recorded)} cases in {RECORDING}")
