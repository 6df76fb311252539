"""$everything's start and end (OperationDefinition Patient-everything): care dates, inclusive, to the
precision given; types without a care date are not filtered, and what a left-out resource refers to is
left out with it."""
from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest

from .harness import put, result_keys


def _encounter(id_: str, start: str, end: str, practitioner: str) -> dict:
    return {"resourceType": "Encounter", "id": id_, "status": "finished", "class": {"code": "AMB"},
            "subject": {"reference": "Patient/p1"}, "period": {"start": start, "end": end},
            "participant": [{"individual": {"reference": f"Practitioner/{practitioner}"}}]}


@pytest.fixture
def record(database, client):
    put(database, {"resourceType": "Patient", "id": "p1"})
    put(database, {"resourceType": "Patient", "id": "p2"})
    for dr in ("dr-2024", "dr-2025", "dr-both"):
        put(database, {"resourceType": "Practitioner", "id": dr})
    put(database, _encounter("e-2024", "2024-01-10T09:00:00Z", "2024-01-10T10:00:00Z", "dr-2024"))
    put(database, _encounter("e-2025", "2025-03-03T09:00:00Z", "2025-03-03T10:00:00Z", "dr-2025"))
    # dr-both is referred to from both years: leaving one encounter out must not leave dr-both out
    put(database, {**_encounter("e-2025b", "2025-03-10T09:00:00Z", "2025-03-10T10:00:00Z", "dr-both")})
    put(database, {**_encounter("e-2024b", "2024-01-11T09:00:00Z", "2024-01-11T10:00:00Z", "dr-both")})
    put(database, {"resourceType": "Observation", "id": "phq9-2025", "status": "final", "code": {"text": "PHQ-9"},
                   "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2025-03-03T09:50:00Z"})
    put(database, {"resourceType": "Observation", "id": "undated", "status": "final", "code": {"text": "note"},
                   "subject": {"reference": "Patient/p1"}})
    put(database, {"resourceType": "CarePlan", "id": "ongoing", "status": "active", "intent": "plan",
                   "subject": {"reference": "Patient/p1"}, "period": {"start": "2024-12-01"}})
    put(database, {"resourceType": "Condition", "id": "mdd", "subject": {"reference": "Patient/p1"},
                   "onsetDateTime": "2010-05-01"})
    # Appointment's `date` is not the clinical-date parameter, but its start is a care date all the same
    put(database, {"resourceType": "Appointment", "id": "appt-2024", "status": "booked",
                   "start": "2024-01-10T09:00:00Z", "end": "2024-01-10T10:00:00Z",
                   "participant": [{"actor": {"reference": "Patient/p1"}, "status": "accepted"}]})
    # billed in 2024 for e-2024: out of a 2025 range, it must not bring e-2024 back with it
    put(database, {"resourceType": "Claim", "id": "claim-2024", "status": "active", "use": "claim",
                   "type": {"text": "professional"}, "patient": {"reference": "Patient/p1"}, "created": "2024-01-10",
                   "provider": {"reference": "Practitioner/dr-2024"}, "priority": {"text": "normal"},
                   "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "Self-pay"}}],
                   "item": [{"sequence": 1, "productOrService": {"text": "visit"},
                             "encounter": [{"reference": "Encounter/e-2024"}]}]})
    put(database, {"resourceType": "MedicationRequest", "id": "rx-2025", "status": "active", "intent": "order",
                   "medicationCodeableConcept": {"text": "sertraline"}, "subject": {"reference": "Patient/p1"},
                   "authoredOn": "2025-03-03"})
    put(database, {"resourceType": "Encounter", "id": "e-other", "status": "finished", "class": {"code": "AMB"},
                   "subject": {"reference": "Patient/p2"}, "period": {"start": "2025-03-03", "end": "2025-03-03"}})
    return client


def _everything(client, query: str, path: str = "Patient/p1") -> set[tuple[str, str]]:  # noqa: ANN001
    r = client.get(f"/fhir/{path}/$everything?{query}")
    assert r.status_code == 200, r.text
    return set(result_keys(r.json()))


UNDATED_TYPES = {("Patient", "p1"), ("Condition", "mdd")}


def test_start_keeps_care_from_that_date_on_and_what_it_refers_to(record):
    assert _everything(record, "start=2025-01-01") == UNDATED_TYPES | {
        ("Encounter", "e-2025"), ("Encounter", "e-2025b"), ("Practitioner", "dr-2025"), ("Practitioner", "dr-both"),
        ("Observation", "phq9-2025"), ("CarePlan", "ongoing"),  # a plan with no end is still going on
        ("MedicationRequest", "rx-2025")}  # authored in range; the 2024 claim and appointment are not


def test_what_the_range_leaves_out_is_not_brought_back_by_type(record):
    # _type=Practitioner: the practitioners of the encounters in range, not of those left out
    assert _everything(record, "start=2025-01-01&_type=Practitioner") == {
        ("Practitioner", "dr-2025"), ("Practitioner", "dr-both")}


def test_a_resource_referred_to_from_one_in_range_is_returned_whatever_its_date(record, database):
    put(database, {"resourceType": "Observation", "id": "follow-up", "status": "final", "code": {"text": "PHQ-9"},
                   "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2025-04-01T09:00:00Z",
                   "encounter": {"reference": "Encounter/e-2024"}})
    found = _everything(record, "start=2025-01-01")
    assert {("Observation", "follow-up"), ("Encounter", "e-2024")} <= found  # its context, as referred to
    assert ("Practitioner", "dr-2024") not in found  # only e-2024 refers to dr-2024, and it is not a member


def test_end_keeps_care_up_to_the_end_of_its_precision(record):
    assert _everything(record, "end=2024-01") == UNDATED_TYPES | {
        ("Encounter", "e-2024"), ("Encounter", "e-2024b"), ("Practitioner", "dr-2024"), ("Practitioner", "dr-both"),
        ("Appointment", "appt-2024"), ("Claim", "claim-2024")}


def test_start_and_end_are_inclusive(record):
    assert _everything(record, "start=2024-01-10&end=2024-01-10") == UNDATED_TYPES | {
        ("Encounter", "e-2024"), ("Practitioner", "dr-2024"), ("Appointment", "appt-2024"), ("Claim", "claim-2024")}
    assert _everything(record, "start=2025-03-03T09:50:00Z&end=2025-03-03T09:50:00Z") == UNDATED_TYPES | {
        ("Encounter", "e-2025"), ("Practitioner", "dr-2025"), ("Observation", "phq9-2025"), ("CarePlan", "ongoing"),
        ("MedicationRequest", "rx-2025")}  # authored that day: a date's range is the whole day


def test_without_start_or_end_nothing_is_filtered(record):
    everything = _everything(record, "")
    assert {("Observation", "undated"), ("Encounter", "e-2024"), ("Practitioner", "dr-2024")} <= everything


def test_type_level_everything_filters_every_patients_care(record):
    found = _everything(record, "start=2025-01-01&_type=Encounter", path="Patient")
    assert found == {("Encounter", "e-2025"), ("Encounter", "e-2025b"), ("Encounter", "e-other")}


def test_links_carry_start_and_end(record):
    r = record.get("/fhir/Patient/p1/$everything?start=2025-01-01&end=2025-12-31&_count=2")
    urls = {link["relation"]: link["url"] for link in r.json()["link"]}
    links = {relation: dict(parse_qsl(urlsplit(url).query)) for relation, url in urls.items()}
    assert links["self"]["start"] == "2025-01-01" and links["self"]["end"] == "2025-12-31"
    assert links["next"]["start"] == "2025-01-01" and links["next"]["end"] == "2025-12-31"
    assert not any(i["severity"] == "warning" for e in r.json().get("entry", []) if e["search"]["mode"] == "outcome"
                   for i in e["resource"]["issue"])


@pytest.mark.parametrize("query, name", [("start=2025-13-01", "start"), ("end=ge2025", "end"),
                                         ("start=2025-01-01&start=2025-02-01", "start"), ("end=yesterday", "end"),
                                         ("start=2025-01-01,2019-05-01", "start"), ("end=2000,2024", "end")])
def test_a_bad_start_or_end_is_a_400_naming_it(record, query, name):
    r = record.get(f"/fhir/Patient/p1/$everything?{query}")
    assert r.status_code == 400, r.text
    assert r.json()["issue"][0]["expression"] == [name]
