"""Operations invoked with POST and a Parameters body (http://hl7.org/fhir/R4/operations.html#request:
"Servers SHALL support POST method for all operations"): Patient $everything and CarePlan $ipt-progress."""
from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from tests.ipt.helpers import load_world

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def _parameters(*parameters: dict) -> dict:
    return {"resourceType": "Parameters", "parameter": list(parameters)}


@pytest.fixture
def patient(client):
    assert client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"}).status_code == 201
    for n in range(3):
        r = client.post("/fhir/Observation", json={"resourceType": "Observation", "status": "final",
                                                   "code": {"text": f"o{n}"}, "subject": {"reference": "Patient/p1"}})
        assert r.status_code == 201, r.text
    return client


def _types(bundle: dict) -> list[str]:
    return sorted(e["resource"]["resourceType"] for e in bundle.get("entry", []))


def _link(bundle: dict, relation: str) -> str | None:
    return next((link["url"] for link in bundle["link"] if link["relation"] == relation), None)


def test_post_everything_with_an_empty_parameters_body_answers_like_get(patient):
    r = patient.post("/fhir/Patient/p1/$everything", json={"resourceType": "Parameters"}, headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    assert _types(r.json()) == _types(patient.get("/fhir/Patient/p1/$everything").json())
    assert r.json()["total"] == 4


def test_post_everything_reads_count_and_type_from_the_parameters_body(patient):
    body = _parameters({"name": "_count", "valueInteger": 2}, {"name": "_type", "valueString": "Observation"})
    r = patient.post("/fhir/Patient/p1/$everything", json=body, headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    page = r.json()
    assert _types(page) == ["Observation", "Observation"]
    assert page["total"] == 3
    # the links carry the body's parameters as a GET, so the next page is one GET away
    assert "_count=2" in _link(page, "self") and "_type=Observation" in _link(page, "self")
    following = patient.get(_link(page, "next").replace("http://testserver", ""))
    assert _types(following.json()) == ["Observation"]


def test_post_everything_reads_since_from_the_parameters_body(patient):
    time.sleep(0.01)
    since = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    time.sleep(0.01)
    patient.post("/fhir/Observation", json={"resourceType": "Observation", "status": "final",
                                            "code": {"text": "late"}, "subject": {"reference": "Patient/p1"}})
    r = patient.post("/fhir/Patient/p1/$everything", json=_parameters({"name": "_since", "valueInstant": since}),
                     headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert [e["resource"]["code"]["text"] for e in r.json()["entry"]] == ["late"]


def test_post_everything_with_a_form_body_or_no_body_still_works(patient):
    form = patient.post("/fhir/Patient/p1/$everything", content="_count=1",
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 200 and len(form.json()["entry"]) == 1
    empty = patient.post("/fhir/Patient/p1/$everything")
    assert empty.status_code == 200 and empty.json()["total"] == 4


@pytest.mark.parametrize("body,expression", [
    ({"resourceType": "Patient", "id": "p1"}, "Patient.resourceType"),
    ([{"name": "_count", "valueInteger": 1}], "Parameters"),
    ({"resourceType": "Parameters", "parameter": {"name": "_count"}}, "Parameters.parameter"),
    (_parameters({"valueInteger": 1}), "Parameters.parameter[0]"),
    (_parameters({"name": "_count", "valueInteger": 2}, {"name": "_type", "part": [{"name": "x"}]}),
     "Parameters.parameter[1]"),
    # a valueReference is a complex value: only an operation that names the parameter takes it (as $export's patient)
    (_parameters({"name": "_type", "valueReference": {"reference": "Observation"}}), "Parameters.parameter[0]"),
])
def test_post_everything_refuses_a_body_that_is_not_primitive_parameters(patient, body, expression):
    r = patient.post("/fhir/Patient/p1/$everything", json=body, headers=FHIR_JSON)
    assert r.status_code == 400, r.text
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"] == [expression]


def test_post_everything_with_an_xml_body_is_unsupported_media(patient):
    r = patient.post("/fhir/Patient/p1/$everything", content=b"<Parameters/>",
                     headers={"Content-Type": "application/fhir+xml"})
    assert r.status_code == 415


def test_post_ipt_progress_with_a_parameters_body_answers_like_get(client):
    load_world(client)
    got = client.get("/fhir/CarePlan/plan/$ipt-progress")
    posted = client.post("/fhir/CarePlan/plan/$ipt-progress", json={"resourceType": "Parameters"}, headers=FHIR_JSON)
    assert posted.status_code == 200, posted.text
    assert posted.json() == got.json()
    assert client.post("/fhir/CarePlan/plan/$ipt-progress").status_code == 200


def test_post_ipt_progress_refuses_a_body_that_is_not_parameters(client):
    load_world(client)
    r = client.post("/fhir/CarePlan/plan/$ipt-progress", json={"resourceType": "CarePlan"}, headers=FHIR_JSON)
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == ["CarePlan.resourceType"]


def test_validate_in_create_mode_refuses_a_conditional_reference_as_the_create_would(client):
    """Only a transaction or an import resolves `Type?criteria`; $validate without a mode allows one (the
    resource may be bound for a transaction), with mode=create it says what the create would."""
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
           "subject": {"reference": "Patient?identifier=http://s|c1"}}
    created = client.post("/fhir/Observation", json=obs, headers={"Content-Type": "application/fhir+json"})
    assert created.status_code == 400
    as_create = client.post("/fhir/Observation/$validate?mode=create", json=obs,
                            headers={"Content-Type": "application/fhir+json"})
    assert [i["expression"] for i in as_create.json()["issue"] if i["severity"] == "error"] == [
        ["Observation.subject.reference"]]
    plain = client.post("/fhir/Observation/$validate", json=obs, headers={"Content-Type": "application/fhir+json"})
    assert not [i for i in plain.json()["issue"] if i["severity"] == "error"]
