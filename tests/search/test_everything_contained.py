"""$everything with the resources the compartment refers to; _contained / _containedType reported."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from .harness import put, remove, result_keys


@pytest.fixture
def course(database, client):
    put(database, {"resourceType": "Organization", "id": "org1", "name": "Clinic"})
    put(database, {"resourceType": "Organization", "id": "org-unrelated", "name": "Elsewhere"})
    put(database, {"resourceType": "Practitioner", "id": "dr1", "name": [{"family": "Weiss"}]})
    put(database, {"resourceType": "Practitioner", "id": "dr-unrelated", "name": [{"family": "Other"}]})
    put(database, {"resourceType": "Location", "id": "loc1", "name": "Room 3"})
    put(database, {"resourceType": "Medication", "id": "med1", "code": {"text": "sertraline"}})
    put(database, {"resourceType": "Medication", "id": "med-deleted", "code": {"text": "x"}})
    put(database, {"resourceType": "Patient", "id": "p1", "managingOrganization": {"reference": "Organization/org1"},
                   "generalPractitioner": [{"reference": "Practitioner/dr1"}]})
    put(database, {"resourceType": "Patient", "id": "p2"})
    for i in range(3):  # all three encounters refer to the same practitioner and location
        put(database, {"resourceType": "Encounter", "id": f"e{i}", "status": "finished", "class": {"code": "AMB"},
                       "subject": {"reference": "Patient/p1"},
                       "participant": [{"individual": {"reference": "Practitioner/dr1"}}],
                       "location": [{"location": {"reference": "Location/loc1"}}]})
    put(database, {"resourceType": "MedicationRequest", "id": "mr1", "status": "active", "intent": "order",
                   "subject": {"reference": "Patient/p1"}, "medicationReference": {"reference": "Medication/med1"}})
    put(database, {"resourceType": "MedicationRequest", "id": "mr2", "status": "active", "intent": "order",
                   "subject": {"reference": "Patient/p1"},
                   "medicationReference": {"reference": "Medication/med-deleted"}})
    remove(database, "Medication", "med-deleted")
    put(database, {"resourceType": "Encounter", "id": "e-other", "status": "finished", "class": {"code": "AMB"},
                   "subject": {"reference": "Patient/p2"},
                   "participant": [{"individual": {"reference": "Practitioner/dr-unrelated"}}],
                   "serviceProvider": {"reference": "Organization/org-unrelated"}})
    return client


EXPECTED = {("Patient", "p1"), ("Encounter", "e0"), ("Encounter", "e1"), ("Encounter", "e2"),
            ("MedicationRequest", "mr1"), ("MedicationRequest", "mr2"),
            ("Organization", "org1"), ("Practitioner", "dr1"), ("Location", "loc1"), ("Medication", "med1")}


def test_everything_adds_referenced_resources_once(course):
    b = course.get("/fhir/Patient/p1/$everything").json()
    keys = result_keys(b)
    assert len(keys) == len(set(keys)), "a resource referenced several times appears once"
    assert set(keys) == EXPECTED  # not the deleted medication, nothing of the other patient
    assert b["total"] == len(EXPECTED)


def test_everything_pages_over_compartment_and_references(course):
    seen: list[tuple[str, str]] = []
    url = "/fhir/Patient/p1/$everything?_count=3"
    pages = 0
    while url:
        b = course.get(url).json()
        assert b["total"] == len(EXPECTED)
        seen += result_keys(b)
        nxt = [link["url"] for link in b["link"] if link["relation"] == "next"]
        url = nxt[0].replace("http://testserver", "") if nxt else None
        pages += 1
    assert pages == 4
    assert len(seen) == len(set(seen)) and set(seen) == EXPECTED


def test_everything_type_filter_applies_to_referenced_resources(course):
    b = course.get("/fhir/Patient/p1/$everything?_type=Encounter,Location").json()
    assert set(result_keys(b)) == {("Encounter", "e0"), ("Encounter", "e1"), ("Encounter", "e2"), ("Location", "loc1")}
    # _type picks the types returned, not the compartment whose references count (Patient-everything: "the
    # resource types to include in the return resources"): p1 and its encounters refer to dr1
    b = course.get("/fhir/Patient/p1/$everything?_type=Practitioner").json()
    assert set(result_keys(b)) == {("Practitioner", "dr1")}
    b = course.get("/fhir/Patient/p1/$everything?_type=Medication,Organization").json()
    assert set(result_keys(b)) == {("Medication", "med1"), ("Organization", "org1")}


def test_everything_since(database, course):
    later = datetime.now(timezone.utc) + timedelta(days=1)
    put(database, {"resourceType": "Location", "id": "loc1", "name": "Room 4"}, last_updated=later)
    put(database, {"resourceType": "Encounter", "id": "e1", "status": "finished", "class": {"code": "AMB"},
                   "subject": {"reference": "Patient/p1"}}, last_updated=later)
    since = (later - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    b = course.get("/fhir/Patient/p1/$everything", params={"_since": since}).json()
    assert set(result_keys(b)) == {("Encounter", "e1"), ("Location", "loc1")}


def test_everything_strict_rejects_unsupported_parameters(course):
    r = course.get("/fhir/Patient/p1/$everything?foo=1", headers={"Prefer": "handling=strict"})
    assert r.status_code == 400
    r = course.get("/fhir/Patient/p1/$everything?foo=1")
    assert r.status_code == 200
    assert r.json()["entry"][0]["search"]["mode"] == "outcome"


@pytest.mark.parametrize("query", ["_contained=true", "_contained=both", "_containedType=contained"])
def test_contained_searches_are_reported(course, query):
    r = course.get(f"/fhir/Encounter?subject=Patient/p1&{query}")
    assert r.status_code == 200
    outcome = r.json()["entry"][0]
    assert outcome["search"]["mode"] == "outcome"
    assert "not supported" in outcome["resource"]["issue"][0]["diagnostics"]
    assert outcome["resource"]["issue"][0]["code"] == "not-supported"
    r = course.get(f"/fhir/Encounter?subject=Patient/p1&{query}", headers={"Prefer": "handling=strict"})
    assert r.status_code == 400
    assert r.json()["issue"][0]["code"] == "not-supported"


def test_contained_defaults_are_accepted_and_bad_values_rejected(course):
    r = course.get("/fhir/Encounter?subject=Patient/p1&_contained=false&_containedType=container",
                   headers={"Prefer": "handling=strict"})
    assert r.status_code == 200
    assert all(e["search"]["mode"] == "match" for e in r.json()["entry"])
    assert course.get("/fhir/Encounter?_contained=maybe").status_code == 400
    assert course.get("/fhir/Encounter?_containedType=x").status_code == 400


def test_everything_of_a_deleted_patient_is_410_as_its_read(course):
    client = course
    assert client.delete("/fhir/Patient/p2").status_code in (200, 204)
    assert client.get("/fhir/Patient/p2").status_code == 410
    gone = client.get("/fhir/Patient/p2/$everything")
    assert gone.status_code == 410 and gone.json()["resourceType"] == "OperationOutcome"
    assert client.get("/fhir/Patient/nobody/$everything").status_code == 404
