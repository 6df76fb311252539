"""Compile the official FHIR R4 definitions into the compact files the strict validator loads.

Run from the repository root:  python scripts/vendor_definitions.py path/to/fhir-r4-definitions

Reads profiles-types, profiles-resources, valuesets and v3-codesystems (gzip JSON bundles, FHIR 4.0.1)
and writes, into ipt_fhir/fhir/definitions/:

  validation-structures.json.gz  per type: kind, base type, and the snapshot elements reduced to what
                                 validation needs (path, min, max, types with target profiles,
                                 required-binding ValueSet, error-severity constraints, contentReference,
                                 isSummary for _summary=true); primitive regexes.
  validation-valuesets.json.gz   every ValueSet named by a required binding, expanded to
                                 {system: [codes]}; ValueSets that cannot be expanded offline are listed
                                 with the reason (they are not enforced).

Only StructureDefinitions with fhirVersion 4.0.1 are taken (the source bundle also carries the R4B
SubscriptionStatus, which is not an R4 resource).
"""
from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

from definitions_source import source_path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "ipt_fhir" / "fhir" / "definitions"
FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
REGEX_EXT = "http://hl7.org/fhir/StructureDefinition/regex"
SD_PREFIX = "http://hl7.org/fhir/StructureDefinition/"


def load_bundle(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [e["resource"] for e in json.load(f)["entry"]]


def strip_version(url: str) -> str:
    return url.split("|", 1)[0]


def element_types(el: dict) -> list:
    out = []
    for t in el.get("type", []):
        code = t["code"]
        if code.startswith("http://hl7.org/fhirpath/System."):
            code = next((x.get("valueUrl") for x in t.get("extension", []) if x["url"] == FHIR_TYPE_EXT), "string")
        profiles = t.get("profile") or []
        # R4 expresses SimpleQuantity/MoneyQuantity as Quantity + profile; validate as the constrained type.
        for p in profiles:
            name = p.rsplit("/", 1)[-1]
            if name in ("SimpleQuantity", "MoneyQuantity"):
                code = name
        targets = [strip_version(p) for p in t.get("targetProfile", [])]
        out.append([code, targets] if targets else [code])
    return out


def compact_element(el: dict, constraints: dict) -> dict:
    c: dict = {"p": el["path"], "mn": el.get("min", 0), "mx": el.get("max", "*")}
    types = element_types(el)
    if types:
        c["t"] = types
    if "contentReference" in el:
        c["cr"] = el["contentReference"].lstrip("#")
    if el.get("isSummary"):
        c["s"] = 1
    b = el.get("binding")
    if b and b.get("strength") == "required" and b.get("valueSet"):
        c["b"] = strip_version(b["valueSet"])
    keys = []
    for k in el.get("constraint", []):
        if k.get("severity") != "error" or not k.get("expression"):
            continue
        keys.append(k["key"])
        constraints.setdefault(k["key"], [k.get("human", ""), k["expression"]])
    if keys:
        c["c"] = keys
    return c


def compile_structures(sds: list[dict]) -> dict:
    types: dict = {}
    primitives: dict = {}
    for sd in sds:
        if sd.get("resourceType") != "StructureDefinition" or sd.get("fhirVersion") != "4.0.1":
            continue
        if sd["kind"] not in ("primitive-type", "complex-type", "resource"):
            continue
        name = sd["id"]
        elements = sd["snapshot"]["element"]
        # constraint keys are not globally unique (inv-1 means three things), so keep them per type
        constraints: dict = {}
        entry = {
            "kind": sd["kind"],
            "abstract": bool(sd.get("abstract")),
            "base": (sd.get("baseDefinition") or "").rsplit("/", 1)[-1] or None,
            "url": sd["url"],
            "elements": [compact_element(el, constraints) for el in elements],
            "constraints": constraints,
        }
        if sd.get("derivation") == "constraint":
            entry["constrains"] = sd["type"]
        types[name] = entry
        if sd["kind"] == "primitive-type":
            value_el = next(el for el in elements if el["path"].endswith(".value"))
            regex = next(
                (x.get("valueString") for x in value_el["type"][0].get("extension", []) if x["url"] == REGEX_EXT),
                None,
            )
            primitives[name] = {"regex": regex, "base": entry["base"]}
    required = sorted({
        el["b"] for t in types.values() for el in t["elements"] if "b" in el
    })
    return {"types": types, "primitives": primitives, "required_value_sets": required}


# --- terminology -------------------------------------------------------------------------------------

def concept_codes(concepts: list[dict], out: set[str]) -> None:
    for c in concepts:
        out.add(c["code"])
        concept_codes(c.get("concept", []), out)


def descendants(concepts: list[dict], code: str, include_self: bool) -> set[str] | None:
    for c in concepts:
        if c["code"] == code:
            found: set[str] = set()
            concept_codes(c.get("concept", []), found)
            if include_self:
                found.add(code)
            return found
        sub = descendants(c.get("concept", []), code, include_self)
        if sub is not None:
            return sub
    return None


class Unexpandable(Exception):
    pass


def expand(url: str, value_sets: dict, code_systems: dict, stack: tuple = ()) -> dict[str, set[str]]:
    if url in stack:
        raise Unexpandable(f"circular import of {url}")
    vs = value_sets.get(url)
    if vs is None:
        raise Unexpandable(f"ValueSet {url} is not in the R4 definitions")
    compose = vs.get("compose")
    if not compose:
        raise Unexpandable(f"ValueSet {url} has no compose")
    result: dict[str, set[str]] = {}

    def part(inc: dict) -> dict[str, set[str]]:
        got: dict[str, set[str]] = {}
        imported = [expand(strip_version(v), value_sets, code_systems, stack + (url,)) for v in inc.get("valueSet", [])]
        system = inc.get("system")
        if system:
            cs = code_systems.get(system)
            codes: set[str] = set()
            if inc.get("concept"):
                codes = {c["code"] for c in inc["concept"]}
            elif inc.get("filter"):
                if cs is None or cs.get("content") not in (None, "complete"):
                    raise Unexpandable(f"filter on external code system {system}")
                for flt in inc["filter"]:
                    op, prop, value = flt.get("op"), flt.get("property"), flt.get("value")
                    if prop == "concept" and op in ("is-a", "descendent-of"):
                        sub = descendants(cs.get("concept", []), value, op == "is-a")
                        if sub is None:
                            raise Unexpandable(f"filter value {value} not in {system}")
                        codes |= sub
                    else:
                        raise Unexpandable(f"filter {prop} {op} {value} on {system}")
            else:
                if cs is None:
                    raise Unexpandable(f"code system {system} is external (not in the R4 definitions)")
                if cs.get("content") not in (None, "complete"):
                    raise Unexpandable(f"code system {system} content is {cs.get('content')}")
                concept_codes(cs.get("concept", []), codes)
            got[system] = codes
        for imp in imported:
            if system:
                # include = intersection of the system part and the imported sets
                got = {s: c & imp.get(s, set()) for s, c in got.items()}
            else:
                for s, c in imp.items():
                    got.setdefault(s, set()).update(c)
        return got

    for inc in compose.get("include", []):
        for s, c in part(inc).items():
            result.setdefault(s, set()).update(c)
    for exc in compose.get("exclude", []):
        for s, c in part(exc).items():
            if s in result:
                result[s] -= c
    return result


def compile_value_sets(required: list[str], terminology: list[dict]) -> dict:
    value_sets = {r["url"]: r for r in terminology if r["resourceType"] == "ValueSet"}
    code_systems: dict = {}
    for r in terminology:
        if r["resourceType"] == "CodeSystem":
            code_systems.setdefault(r["url"], r)
    expanded: dict = {}
    unenforceable: dict = {}
    for url in required:
        try:
            codes = expand(url, value_sets, code_systems)
            expanded[url] = {s: sorted(c) for s, c in sorted(codes.items())}
        except Unexpandable as exc:
            unenforceable[url] = str(exc)
    return {"expansions": expanded, "unenforceable": unenforceable}


def main(argv: list[str]) -> None:
    src = source_path(argv, "the folder of the gzipped official R4 definitions bundles")
    sds = load_bundle(src / "profiles-types.json.gz") + load_bundle(src / "profiles-resources.json.gz")
    structures = compile_structures(sds)
    terminology = load_bundle(src / "valuesets.json.gz") + load_bundle(src / "v3-codesystems.json.gz")
    value_sets = compile_value_sets(structures["required_value_sets"], terminology)
    OUT.mkdir(parents=True, exist_ok=True)
    for name, data in (("validation-structures.json.gz", structures), ("validation-valuesets.json.gz", value_sets)):
        raw = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
        with open(OUT / name, "wb") as f:
            f.write(gzip.compress(raw, compresslevel=9, mtime=0))
        print(f"wrote {name}: {len(raw)} bytes raw")
    print(f"types: {len(structures['types'])}")
    print(f"required value sets: {len(value_sets['expansions'])} expanded, {len(value_sets['unenforceable'])} not enforceable:")
    for url, why in sorted(value_sets["unenforceable"].items()):
        print(f"  {url}: {why}")


if __name__ == "__main__":
    main(sys.argv)
