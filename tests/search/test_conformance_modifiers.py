"""Unsupported modifiers and _query values are refused whatever Prefer: handling says.

search.html#modifiers: "Servers SHALL reject any search request that contains a search parameter with a
modifier that the server does not support for that parameter ... using an HTTP 400 error"; #query:
"Servers processing search requests SHALL refuse to process a search request if they do not recognize
the _query parameter value". Unknown *parameters* stay lenient by default (ignored with a warning; a 400
under handling=strict).
"""
from __future__ import annotations

import pytest

from .harness import put

PREFERS = [{}, {"Prefer": "handling=lenient"}, {"Prefer": "handling=strict"}]


@pytest.fixture
def seeded(database, client):
    put(database, {"resourceType": "Patient", "id": "ng", "name": [{"family": "Ng"}], "gender": "female",
                   "birthDate": "1980-01-01"})
    put(database, {"resourceType": "Patient", "id": "smith", "name": [{"family": "Smith"}], "gender": "male"})
    put(database, {"resourceType": "Observation", "id": "o1", "status": "final",
                   "code": {"coding": [{"system": "http://loinc.org", "code": "44261-6"}]},
                   "subject": {"reference": "Patient/ng"}})
    return client


def refusal(r) -> dict:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    [issue] = body["issue"]
    assert issue["severity"] == "error" and issue["code"] == "not-supported"
    return issue


def matches(r) -> set[str]:
    assert r.status_code == 200, r.text
    return {e["resource"]["id"] for e in r.json().get("entry", []) if e["search"]["mode"] == "match"}


@pytest.mark.parametrize("path, name, value", [
    ("Patient", "_id:not", "ng"),
    ("Observation", "code:below", "http://loinc.org|44261"),
    ("Observation", "code:above", "http://loinc.org|44261-6"),
    ("Patient", "gender:exact", "female"),
    ("Patient", "gender:identifier", "female"),
    ("Patient", "birthdate:exact", "1980-01-01"),
    ("Patient", "family:below", "Ng"),
    ("Patient", "family:sounds", "Ng"),
    ("Observation", "subject:Patient:missing", "false"),
    ("Observation", "subject:bogus", "ng"),
    ("Observation", "subject:Bogus.name", "Ng"),
    ("Observation", "subject.name:below", "Ng"),
    ("Patient", "_has:Observation:subject:code:below", "44261"),
    ("Patient", "gender:of-type", "http://terminology.hl7.org/CodeSystem/v2-0203|MR|female"),
    ("Observation", "code:of-type", "http://terminology.hl7.org/CodeSystem/v2-0203|MR|44261-6"),
])
@pytest.mark.parametrize("headers", PREFERS)
def test_an_unsupported_modifier_is_a_400(seeded, path, name, value, headers):
    issue = refusal(seeded.get(f"/fhir/{path}", params={name: value}, headers=headers))
    assert issue["expression"] == [name]


@pytest.mark.parametrize("headers", PREFERS)
def test_an_unsupported_modifier_is_refused_in_every_kind_of_search(seeded, headers):
    for path in ("/fhir/Patient/ng/Observation?code:below=x", "/fhir?_type=Patient&family:below=Ng",
                 "/fhir/Patient/_search?family:below=Ng"):
        method = seeded.post if "_search" in path else seeded.get
        refusal(method(path, headers=headers))


def test_a_conditional_operation_refuses_it_too(seeded):
    r = seeded.post("/fhir/Patient", json={"resourceType": "Patient"}, headers={"If-None-Exist": "family:below=Ng"})
    refusal(r)


def test_supported_modifiers_still_work(seeded):
    assert matches(seeded.get("/fhir/Patient?family:exact=Ng")) == {"ng"}
    assert matches(seeded.get("/fhir/Patient?gender:not=female")) == {"smith"}
    assert matches(seeded.get("/fhir/Patient?birthdate:missing=true")) == {"smith"}
    assert matches(seeded.get("/fhir/Observation?subject:Patient=ng")) == {"o1"}
    assert matches(seeded.get("/fhir/Observation?subject:Patient.name:exact=Ng")) == {"o1"}
    assert matches(seeded.get("/fhir/Patient?_id:missing=false")) == {"ng", "smith"}


def test_an_unknown_parameter_with_a_modifier_stays_lenient_by_default(seeded):
    r = seeded.get("/fhir/Patient?foo:exact=1")
    assert matches(r) == {"ng", "smith"}
    outcome = [e["resource"] for e in r.json()["entry"] if e["search"]["mode"] == "outcome"]
    assert [i["severity"] for o in outcome for i in o["issue"]] == ["warning"]
    assert seeded.get("/fhir/Patient?foo:exact=1", headers={"Prefer": "handling=strict"}).status_code == 400


@pytest.mark.parametrize("headers", PREFERS)
def test_an_unrecognised_query_is_refused(seeded, headers):
    issue = refusal(seeded.get("/fhir/Patient?_query=current-high-risk&family=Ng", headers=headers))
    assert issue["expression"] == ["_query"]
    refusal(seeded.get("/fhir?_type=Patient&_query=x", headers=headers))
    refusal(seeded.get("/fhir/Patient/ng/Observation?_query=x", headers=headers))


def test_a_reference_to_a_contained_resource_is_present_for_missing(database, seeded):
    """search.html#modifiers: `:missing=false` returns the resources that have a value for the parameter;
    `subject` holding `#c1` has one."""
    put(database, {"resourceType": "Observation", "id": "ocont", "status": "final", "code": {"text": "x"},
                   "contained": [{"resourceType": "Patient", "id": "c1", "name": [{"family": "Inside"}]}],
                   "subject": {"reference": "#c1"}})
    assert "ocont" in matches(seeded.get("/fhir/Observation?subject:missing=false"))
    assert "ocont" not in matches(seeded.get("/fhir/Observation?subject:missing=true"))
    assert "ocont" not in matches(seeded.get("/fhir/Observation?subject=Patient/c1"))
