"""Vendor the compact search definitions the server reads at runtime.

Reads the official R4 definitions (the folder given as argv[1]; see definitions_source.py) and writes into
ipt_fhir/fhir/definitions/:
  search-parameters.json.gz          every SearchParameter, only the fields search needs
  search-compartment-patient.json.gz the Patient CompartmentDefinition as {resource type: [param codes]}
  search-summary-tree.json.gz        the summary elements at every depth, for _summary=true (summary_tree)
"""
from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

from definitions_source import source_path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "ipt_fhir" / "fhir" / "definitions"
KEEP = ("url", "code", "base", "type", "expression", "target", "modifier", "comparator", "multipleOr",
        "multipleAnd", "component", "chain")


def _load(src: Path, name: str) -> dict:
    with gzip.open(src / name) as fh:
        return json.load(fh)


def _write(name: str, data) -> None:  # noqa: ANN001
    raw = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
    (OUT / name).write_bytes(gzip.compress(raw, compresslevel=9, mtime=0))


def main() -> None:
    src = source_path(sys.argv, "the folder of the gzipped official R4 definitions bundles")
    bundle = _load(src, "search-parameters.json.gz")
    params = []
    for entry in bundle["entry"]:
        res = entry["resource"]
        params.append({k: res[k] for k in KEEP if k in res})
    _write("search-parameters.json.gz", params)

    comp = _load(src, "compartmentdefinition-patient.json.gz")
    _write("search-compartment-patient.json.gz",
           {r["code"]: r["param"] for r in comp["resource"] if r.get("param")})

    _write("search-summary-tree.json.gz", summary_tree(
        [e["resource"] for name in ("profiles-resources.json.gz", "profiles-types.json.gz")
         for e in _load(src, name)["entry"]]))
    print(f"{len(params)} search parameters")


# Kept whole under _summary=true: the server's own meta (SUBSETTED is added to it), and types whose
# parts the summary flags would take apart (an extension kept without its url and value).
_OPAQUE = {"Meta", "Narrative", "Extension", "Resource", "Element", "BackboneElement"}


def summary_tree(definitions: list[dict]) -> dict[str, dict[str, str | None]]:
    """{node: {JSON property: node to filter its value by, or None}} with only the properties marked
    isSummary. A node is a resource type, a backbone element's path (Observation.component) or a complex
    data type (Attachment: its `data` is no summary element). Choice elements appear as their JSON names
    (valueQuantity, valueAttachment, ...)."""
    sds = [sd for sd in definitions if sd.get("resourceType") == "StructureDefinition"
           and sd.get("derivation") == "specialization" and sd.get("kind") in ("resource", "complex-type")]
    complex_types = {sd["type"] for sd in sds if sd["kind"] == "complex-type"} - _OPAQUE
    tree: dict[str, dict[str, str | None]] = {}
    for sd in sds:
        elements = sd["snapshot"]["element"]
        parents = {el["path"].rsplit(".", 1)[0] for el in elements if "." in el["path"]}
        for el in elements:
            path = el["path"]
            if "." not in path:
                tree.setdefault(path, {})
                continue
            parent, name = path.rsplit(".", 1)
            node = tree.setdefault(parent, {})
            if not el.get("isSummary"):
                continue
            codes = [t["code"] for t in el.get("type", [])]
            if name.endswith("[x]"):
                keys = {name[:-3] + c[:1].upper() + c[1:]: c for c in codes}
            else:
                keys = {name: codes[0] if len(codes) == 1 else None}
            for key, code in keys.items():
                if path in parents:
                    node[key] = path  # a backbone element: its own children
                elif el.get("contentReference"):
                    node[key] = el["contentReference"].lstrip("#")
                else:
                    node[key] = code if code in complex_types else None
    return tree


if __name__ == "__main__":
    main()
