"""Hypothesis strategies that break valid FHIR resources in the ways real clients do."""
from __future__ import annotations

import copy
import gzip
import json
from functools import lru_cache

from hypothesis import strategies as st

from .conftest import FIXTURES, load_examples

SYNTHEA = FIXTURES / "synthea" / "bulk-ndjson-10-patients"

ODD_STRINGS = ["", " ", "\u0000", "\t\n", "é", "\u202e", "😀" * 3, "\ufeff", "x" * 5000, "../../etc",
               "Patient/", "#", "urn:uuid:", "null", "true", "1e999", "%00", "'; DROP TABLE resource;--",
               "2024-13-45", "9999-12-31T23:59:59Z", "0000-01-01", "-1", "\\", '"', "<div/>", "&#0;"]
ODD_NUMBERS = [0, -1, 1.5, 10 ** 30, -(10 ** 30), 1e308, -1e-308, 2 ** 63, 2 ** 64 + 1, 0.1]
WRONG_TYPES = [None, {}, [], [None], [{}], [[]], True, False, {"value": 1}, [1, 2]] + ODD_NUMBERS + ODD_STRINGS
BAD_REFERENCES = ["", "Patient/", "Patient/../../x", "Bogus/1", "Patient/does-not-exist", "#missing",
                  "urn:uuid:not-a-uuid", "http://", "Patient/a b", "Patient/1/_history/x", "/Patient/1",
                  "Patient?identifier=x", "#", "Patient/" + "a" * 200, "urn:oid:", "Patient/1/_history/"]


@lru_cache(maxsize=1)
def synthea_samples() -> tuple[str, ...]:
    out = []
    for path in sorted(SYNTHEA.glob("*.ndjson.gz")):
        with gzip.open(path, "rt") as f:
            for i, line in enumerate(f):
                if i >= 2:
                    break
                out.append(line)
    return tuple(out)


@lru_cache(maxsize=1)
def samples() -> tuple[str, ...]:
    return tuple(json.dumps(r) for r in load_examples()) + synthea_samples()


def sample_resources():
    return st.sampled_from(samples()).map(json.loads)


def _paths(node, prefix=()):  # every (container, key) pair in the JSON tree
    if isinstance(node, dict):
        for k, v in node.items():
            yield prefix + (k,)
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield prefix + (i,)
            yield from _paths(v, prefix + (i,))


def _depth(node) -> int:
    if isinstance(node, dict):
        return 1 + max((_depth(v) for v in node.values()), default=0)
    if isinstance(node, list):
        return 1 + max((_depth(v) for v in node), default=0)
    return 0


def _container(resource, path):
    node = resource
    for step in path[:-1]:
        node = node[step]
    return node


def deep(depth: int):
    value: object = "x"
    for i in range(depth):
        value = [value] if i % 2 else {"extension": value}
    return value


@st.composite
def mutated_resources(draw, source=None):
    resource = copy.deepcopy(draw(source or sample_resources()))
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(resource)) if _depth(resource) < 50 else []
        kind = draw(st.sampled_from(["wrong-type", "wrong-type", "delete", "unknown", "code", "reference",
                                     "contained", "wrap", "deep", "unicode", "primitive-ext"]))
        if kind == "contained":
            resource["contained"] = draw(st.sampled_from([
                [], [{}], [None], "x", [{"resourceType": "Bogus", "id": "a"}], [{"resourceType": "Patient"}],
                [{"resourceType": "Patient", "id": "p", "contained": [{"resourceType": "Patient", "id": "q"}]}],
                [{"resourceType": "Patient", "id": "p"}, {"resourceType": "Patient", "id": "p"}],
                [{"resourceType": "Patient", "id": "p", "meta": {"versionId": "1"}}],
                [{"resourceType": "Patient", "id": "p", "text": {"status": "generated", "div": "<div/>"}}],
                [{"resourceType": "Patient", "id": "p", "gender": 7}]]))
            continue
        if kind == "deep":
            resource[draw(st.sampled_from(["extension", "modifierExtension", "name", "zzz"]))] = deep(
                draw(st.integers(10, 200)))
            continue
        if not paths:
            continue
        path = draw(st.sampled_from(paths))
        holder = _container(resource, path)
        key = path[-1]
        if kind == "wrong-type":
            holder[key] = draw(st.sampled_from(WRONG_TYPES).map(copy.deepcopy))
        elif kind == "delete":
            del holder[key]
        elif kind == "unknown":
            target = holder if isinstance(holder, dict) else resource
            target[draw(st.sampled_from(["bogus", "_bogus", "", " ", "resourceType2", "_id", "Extension",
                                         "value[x]", "valueFoo", "__proto__", "é"]))] = draw(
                st.sampled_from(WRONG_TYPES).map(copy.deepcopy))
        elif kind == "code":
            holder[key] = draw(st.sampled_from(["bogus-code", "", "MALE", " male", "final ", "x" * 300]))
        elif kind == "reference":
            if isinstance(holder, dict) and "reference" in holder:
                holder["reference"] = draw(st.sampled_from(BAD_REFERENCES))
            else:
                holder[key] = {"reference": draw(st.sampled_from(BAD_REFERENCES))}
        elif kind == "wrap":
            holder[key] = [holder[key]] if not isinstance(holder[key], list) else holder[key][0] if holder[key] else {}
        elif kind == "unicode":
            holder[key] = draw(st.text(min_size=0, max_size=30))
        elif kind == "primitive-ext" and isinstance(holder, dict) and isinstance(key, str):
            holder["_" + key] = draw(st.sampled_from([{}, [], None, {"extension": [{}]}, {"id": 1},
                                                       [None, {"extension": []}], "x"]))
    return resource


json_patch_ops = st.lists(st.fixed_dictionaries(
    {"op": st.sampled_from(["add", "remove", "replace", "move", "copy", "test", "bogus", ""]),
     "path": st.sampled_from(["/", "", "/id", "/resourceType", "/meta", "/meta/versionId", "/name", "/name/0",
                              "/name/-", "/name/99", "/gender", "/birthDate", "/a~2b", "/name/0/given/0",
                              "/text/div", "/contained/0", "/extension/-", "//", "/name/x"])},
    optional={"value": st.sampled_from(WRONG_TYPES + [{"family": "X"}, "female", "2020-01-01"]).map(copy.deepcopy),
              "from": st.sampled_from(["/name", "/gender", "/nope", "", "/name/0/family"])}), max_size=4)

fhirpath_patch_bodies = st.builds(
    lambda ops: {"resourceType": "Parameters", "parameter": ops},
    st.lists(st.builds(
        lambda t, p, n, v: {"name": "operation", "part": [x for x in (
            {"name": "type", "valueCode": t}, {"name": "path", "valueString": p},
            {"name": "name", "valueString": n} if n else None, v) if x]},
        st.sampled_from(["add", "insert", "delete", "replace", "move", "bogus"]),
        st.sampled_from(["Patient", "Patient.name", "Patient.name[0]", "Patient.gender", "Patient.(", "",
                         "Patient.name.where(use='x')", "Patient.birthDate", "Patient.extension", "%x"]),
        st.sampled_from([None, "family", "gender", "", "bogus"]),
        st.sampled_from([None, {"name": "value", "valueString": "x"}, {"name": "value", "valueCode": "female"},
                         {"name": "value", "valueInteger": 10 ** 20}, {"name": "value"},
                         {"name": "value", "part": []}, {"name": "index", "valueInteger": -1}])),
        max_size=3))
