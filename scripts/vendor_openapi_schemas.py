"""Vendor the JSON Schemas the OpenAPI document needs from the official FHIR R4 JSON Schema.

    python scripts/vendor_openapi_schemas.py path/to/fhir.schema.json.gz

The source is HL7's R4 JSON Schema (fhir.schema.json, gzipped; see definitions_source.py). Writes
ipt_fhir/fhir/definitions/openapi-schemas.json.gz: the documented resource types and every datatype
they reach, `$ref`s rewritten to `#/components/schemas/…`. `ResourceList` (a oneOf over all 146 resource
types, reached through Bundle.entry.resource, Parameters.parameter.resource and contained) is replaced
by a small open `Resource` schema so the document stays a few hundred kilobytes.
"""
from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

from definitions_source import source_path

REPO = Path(__file__).resolve().parents[1]
TARGET = REPO / "ipt_fhir" / "fhir" / "definitions" / "openapi-schemas.json.gz"

# Keep in step with ipt_fhir.api.openapi.DOCUMENTED_TYPES (a test checks it).
RESOURCE_TYPES = ("CarePlan", "Goal", "Encounter", "Patient", "Condition", "Observation", "ServiceRequest",
                  "Procedure", "PlanDefinition", "Practitioner", "Bundle", "OperationOutcome", "Parameters")

ANY_RESOURCE = {
    "description": "Any FHIR R4 resource; `resourceType` names its type (see the schema of that type).",
    "type": "object",
    "properties": {"resourceType": {"type": "string", "description": "The resource type, e.g. CarePlan"}},
    "required": ["resourceType"],
    "additionalProperties": True,
}


def _refs(node, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/definitions/"):
            found.add(ref.rsplit("/", 1)[1])
        for value in node.values():
            _refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _refs(value, found)


def _rewrite(node):
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("#/definitions/"):
                name = value.rsplit("/", 1)[1]
                out[key] = "#/components/schemas/" + ("Resource" if name == "ResourceList" else name)
            else:
                out[key] = _rewrite(value)
        return out
    if isinstance(node, list):
        return [_rewrite(v) for v in node]
    return node


def closure(definitions: dict, roots: tuple[str, ...]) -> dict:
    keep: dict = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in keep or name == "ResourceList":
            continue
        keep[name] = definitions[name]
        found: set[str] = set()
        _refs(definitions[name], found)
        todo.extend(sorted(found - set(keep)))
    out = {name: _rewrite(keep[name]) for name in sorted(keep)}
    out["Resource"] = ANY_RESOURCE
    return out


def main(argv: list[str]) -> int:
    source = source_path(argv, "the gzipped official R4 JSON Schema, fhir.schema.json.gz")
    with gzip.open(source, "rt", encoding="utf-8") as f:
        definitions = json.load(f)["definitions"]
    schemas = closure(definitions, RESOURCE_TYPES)
    data = json.dumps(schemas, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    TARGET.write_bytes(gzip.compress(data, mtime=0))
    print(f"{TARGET.relative_to(REPO)}: {len(schemas)} schemas, {len(data)} bytes JSON, "
          f"{TARGET.stat().st_size} bytes gzipped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
