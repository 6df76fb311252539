"""Vendor the compact search definitions the server reads at runtime.

Reads the official R4 definitions (the folder given as argv[1]; see definitions_source.py) and writes into
ipt_fhir/fhir/definitions/:
  search-parameters.json.gz          every SearchParameter, only the fields search needs
  search-compartment-patient.json.gz the Patient CompartmentDefinition as {resource type: [param codes]}
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

    print(f"{len(params)} search parameters")


if __name__ == "__main__":
    main()
