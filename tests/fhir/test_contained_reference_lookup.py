"""A `#id` reference is checked against the contained resource with that id, not another one
(references.html#contained): the type of the one it names decides."""
from __future__ import annotations

from ipt_fhir.fhir.validation import validate_resource

OBS = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
       "focus": [{"reference": "#m"}, {"reference": "#p"}]}  # Reference(Any): both referenced (dom-3)
CONTAINED = [{"resourceType": "Medication", "id": "m"}, {"resourceType": "Patient", "id": "p"}]


def _errors(subject: str) -> list:
    return [i for i in validate_resource({**OBS, "contained": CONTAINED, "subject": {"reference": subject}})
            if i.is_error]


def test_a_reference_to_the_second_contained_resource_is_checked_against_that_one():
    assert _errors("#p") == []  # a Patient is an allowed subject, though a Medication comes first
    assert [i.expression for i in _errors("#m")] == [("Observation.subject.reference",)]
