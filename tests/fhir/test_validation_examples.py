"""Every official R4 example and every Synthea resource validates clean against the base spec."""
from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from ipt_fhir.fhir.jsonio import parse_json
from ipt_fhir.fhir.validation import validate_resource
from ipt_fhir.fhir.validation.engine import UNEVALUABLE

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures"
EXAMPLES = SHARED / "hl7-r4-examples"
SYNTHEA = SHARED / "synthea"

# Official examples that are genuinely invalid, with the issue that proves it.
KNOWN_INVALID = {
    # Observation.performer allows Practitioner | PractitionerRole | Organization | CareTeam | Patient |
    # RelatedPerson; this example points it at an Encounter (FHIR.js flags the same example).
    "Observation-clinical-gender.json": ("value", "Observation.performer[0].reference", "Encounter"),
}

example_files = sorted((EXAMPLES / "resources").glob("*.json")) + sorted((EXAMPLES / "bundles").glob("*.json"))
synthea_bundles = sorted((SYNTHEA / "bundles").glob("*.json.gz"))
synthea_ndjson = [p for p in sorted((SYNTHEA / "bulk-ndjson-10-patients").glob("*.ndjson.gz")) if not p.name.startswith("log")]


def errors(resource: object, *, conditional_references: bool = False) -> list:
    issues = validate_resource(resource, conditional_references=conditional_references)
    return [i for i in issues if i.is_error or i.code == "not-supported"]


@pytest.mark.parametrize("path", example_files, ids=lambda p: p.name)
def test_official_example_validates_clean(path: Path) -> None:
    issues = errors(parse_json(path.read_bytes()))
    if path.name in KNOWN_INVALID:
        code, expression, words = KNOWN_INVALID[path.name]
        assert [(i.code, i.expression) for i in issues] == [(code, (expression,))]
        assert words in issues[0].diagnostics
    else:
        assert issues == []


@pytest.mark.parametrize("path", synthea_bundles, ids=lambda p: p.name[:24])
def test_synthea_bundle_and_each_entry_validate_clean(path: Path) -> None:
    bundle = parse_json(gzip.decompress(path.read_bytes()))
    assert errors(bundle) == []
    for entry in bundle["entry"]:
        assert errors(entry["resource"]) == [], entry["fullUrl"]


@pytest.mark.parametrize("path", synthea_ndjson, ids=lambda p: p.name)
def test_synthea_bulk_ndjson_lines_validate_clean(path: Path) -> None:
    lines = [line for line in gzip.decompress(path.read_bytes()).splitlines() if line.strip()]
    assert lines
    for n, line in enumerate(lines):  # validated as the importer does: it resolves conditional references
        assert errors(parse_json(line), conditional_references=True) == [], f"line {n}"


def test_no_invariant_was_left_unevaluated() -> None:
    for path in example_files[:40]:
        validate_resource(parse_json(path.read_bytes()))
    assert UNEVALUABLE == {}
