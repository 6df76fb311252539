"""Token search on plain `code` elements: "the system is implicit (defined in the value set)"
(search.html#token), so a search may name it: Patient?gender=http://hl7.org/fhir/administrative-gender|male."""
from __future__ import annotations

import pytest

GENDER = "http://hl7.org/fhir/administrative-gender"


@pytest.fixture
def people(engine):
    engine.put({"resourceType": "Patient", "id": "m", "gender": "male", "active": True})
    engine.put({"resourceType": "Patient", "id": "f", "gender": "female"})
    engine.put({"resourceType": "Observation", "id": "o", "status": "final", "code": {"text": "x"}})
    return engine


def test_a_code_matches_with_its_value_sets_system_or_without_a_system(people):
    assert people.ids("Patient", f"gender={GENDER}|male") == {"m"}
    assert people.ids("Patient", "gender=male") == {"m"}
    assert people.ids("Patient", f"gender={GENDER}|") == {"m", "f"}
    assert people.ids("Observation", "status=http://hl7.org/fhir/observation-status|final") == {"o"}


def test_a_code_does_not_match_another_system_or_an_explicit_no_system(people):
    assert people.ids("Patient", "gender=http://example.org/other|male") == set()
    assert people.ids("Patient", "gender=|male") == set()  # it has a system: its value set's
    assert people.ids("Patient", f"gender:not={GENDER}|male") == {"f"}


def test_codings_identifiers_and_booleans_keep_their_own_systems(people):
    assert people.ids("Patient", "active=true") == {"m"}
    people.put({"resourceType": "Patient", "id": "i", "identifier": [{"value": "no-system"}]})
    assert people.ids("Patient", "identifier=|no-system") == {"i"}
