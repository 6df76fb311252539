"""Vendor the list of concrete R4 resource types from the official StructureDefinitions.

Usage: python scripts/vendor_resource_types.py path/to/fhir-r4-definitions
Writes ipt_fhir/fhir/definitions/resource-types.json.
"""
import gzip
import json
import sys
from pathlib import Path

from definitions_source import source_path

root = Path(__file__).resolve().parents[1]
src = source_path(sys.argv, "the folder of the gzipped official R4 definitions bundles")
bundle = json.load(gzip.open(src / "profiles-resources.json.gz"))
types = sorted(
    e["resource"]["id"]
    for e in bundle["entry"]
    if e["resource"]["resourceType"] == "StructureDefinition"
    and e["resource"].get("kind") == "resource"
    and not e["resource"].get("abstract")
    and e["resource"].get("derivation") == "specialization"
    # the source bundle also carries the R4B SubscriptionStatus, which is not an R4 resource
    and e["resource"].get("fhirVersion") == "4.0.1"
)
out = root / "ipt_fhir" / "fhir" / "definitions" / "resource-types.json"
out.write_text(json.dumps({"fhirVersion": "4.0.1", "resourceTypes": types}, indent=0) + "\n")
print(f"{len(types)} resource types -> {out.relative_to(root)}")
