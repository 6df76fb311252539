"""_elements subsets the matches only: "The list of elements does not apply to included resources"
(search.html#elements). _summary still subsets both."""
from __future__ import annotations

import pytest

from .harness import put

SUBSETTED = "SUBSETTED"


@pytest.fixture
def seeded(database, client):
    put(database, {"resourceType": "Patient", "id": "p1", "name": [{"family": "Ng"}], "gender": "female",
                   "birthDate": "1980-01-01"})
    put(database, {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "PHQ-9"},
                   "subject": {"reference": "Patient/p1"}, "valueQuantity": {"value": 12}})
    return client


def entries(r, mode: str) -> list[dict]:
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json()["entry"] if e["search"]["mode"] == mode]


def tags(resource: dict) -> set[str]:
    return {t["code"] for t in resource.get("meta", {}).get("tag", [])}


def test_elements_leave_included_resources_whole(seeded):
    r = seeded.get("/fhir/Observation?_id=o1&_elements=value&_include=Observation:subject")
    [match] = entries(r, "match")
    assert "valueQuantity" in match and "subject" not in match and SUBSETTED in tags(match)
    [included] = entries(r, "include")
    assert included["name"] == [{"family": "Ng"}] and included["birthDate"] == "1980-01-01"
    assert SUBSETTED not in tags(included)


def test_elements_leave_revincluded_resources_whole(seeded):
    r = seeded.get("/fhir/Patient?_id=p1&_elements=gender&_revinclude=Observation:subject")
    [match] = entries(r, "match")
    assert "gender" in match and "birthDate" not in match
    [included] = entries(r, "include")
    assert included["valueQuantity"] == {"value": 12} and SUBSETTED not in tags(included)


def test_summary_still_applies_to_included_resources(seeded):
    r = seeded.get("/fhir/Observation?_id=o1&_summary=text&_include=Observation:subject")
    [included] = entries(r, "include")
    assert "birthDate" not in included and SUBSETTED in tags(included)


def test_elements_qualified_by_type_or_given_as_paths_keep_their_top_level_element(seeded):
    """`Patient.name` (as HAPI and its clients write _elements) and `name.family` both keep `name`; a
    name qualified by another type keeps nothing of this one. Both forms used to leave only id and meta."""
    r = seeded.get("/fhir/Patient?_id=p1&_elements=Patient.name,Observation.code")
    [match] = entries(r, "match")
    assert match["name"] == [{"family": "Ng"}] and "gender" not in match and "code" not in match
    [match] = entries(seeded.get("/fhir/Patient?_id=p1&_elements=name.family,gender"), "match")
    assert match["name"] == [{"family": "Ng"}] and match["gender"] == "female" and "birthDate" not in match
    read = seeded.get("/fhir/Patient/p1?_elements=Patient.birthDate").json()
    assert read["birthDate"] == "1980-01-01" and "name" not in read and SUBSETTED in tags(read)
    r = seeded.get("/fhir?_type=Patient,Observation&_elements=Patient.gender,Observation.status")
    by_type = {e["resource"]["resourceType"]: e["resource"] for e in r.json()["entry"]}
    assert by_type["Patient"]["gender"] == "female" and "name" not in by_type["Patient"]
    assert by_type["Observation"]["status"] == "final" and "valueQuantity" not in by_type["Observation"]
