"""The validator's shortcuts (memoised checks, skipped constraints, inline primitives) change no answer."""
from __future__ import annotations

from ipt_fhir.fhir.validation import validate_resource


def _issues(resource: dict) -> list[tuple]:
    return [(i.severity, i.code, i.diagnostics, i.expression) for i in validate_resource(resource)]


def test_an_empty_object_still_gets_its_elements_constraints():
    issues = _issues({"resourceType": "Bundle", "type": "collection", "entry": [{}]})
    assert ("error", "structure", "Objects must not be empty", ("Bundle.entry[0]",)) in issues
    assert any(code == "invariant" and "bdl-5" in text and expr == ("Bundle.entry[0]",)
               for _, code, text, expr in issues)


def test_memoised_primitive_and_reference_checks_answer_each_time():
    bad = {"resourceType": "Observation", "status": "nope", "code": {"text": "x"},
           "subject": {"reference": "Nope/1"}, "effectiveDateTime": "2021-02-30"}
    first = _issues(bad)
    assert first == _issues(bad)
    assert [c for _, c, _, _ in first].count("value") == 2  # the date and the reference
    assert any(code == "code-invalid" and "'nope'" in text for _, code, text, _ in first)
    good = dict(bad, status="final", subject={"reference": "Patient/1"}, effectiveDateTime="2021-02-28")
    assert _issues(good) == []


def test_equal_values_of_different_json_types_are_checked_apart():
    # 1, 1.0 and True are equal dict keys; a memo keyed on them would mix their verdicts up
    base = {"resourceType": "Patient", "active": True}
    assert _issues(base) == []
    assert _issues(dict(base, active=1))[0][2].startswith("Expected a JSON boolean")
    assert _issues(dict(base, birthDate=1))[0][2].startswith("Expected a JSON string for date")
