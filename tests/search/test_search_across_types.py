"""Search across types ([base]?_type=..., [base]?...): the parameters must be common to all the searched
types (search.html#_type: they "SHALL be common to all the types"; without _type, to all types).

A parameter some of the types have and others lack would filter part of the result set and silently
return every resource of the rest: that is a 400 naming the parameter and the types lacking it, whatever
Prefer: handling says. A parameter no searched type has is ignored with a warning, as on a type search.
"""
from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest

from .harness import put

PREFERS = [{}, {"Prefer": "handling=lenient"}, {"Prefer": "handling=strict"}]


@pytest.fixture
def seeded(database, client):
    put(database, {"resourceType": "Patient", "id": "pm", "name": [{"family": "Muller"}]})
    put(database, {"resourceType": "Patient", "id": "pn", "name": [{"family": "Ng"}]})
    put(database, {"resourceType": "Practitioner", "id": "dm", "name": [{"family": "Muller"}]})
    put(database, {"resourceType": "Practitioner", "id": "dw", "name": [{"family": "Weiss"}]})
    put(database, {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "PHQ-9"},
                   "subject": {"reference": "Patient/pm"}})
    put(database, {"resourceType": "Immunization", "id": "i1", "status": "completed", "lotNumber": "AB1",
                   "vaccineCode": {"text": "x"}, "patient": {"reference": "Patient/pm"},
                   "occurrenceDateTime": "2024-01-01"})
    put(database, {"resourceType": "Medication", "id": "m1", "batch": {"lotNumber": "AB1"}})
    return client


def matches(r) -> set[tuple[str, str]]:
    return {(e["resource"]["resourceType"], e["resource"]["id"]) for e in r.json().get("entry", [])
            if e["search"]["mode"] == "match"}


def the_error(r) -> dict:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    [issue] = body["issue"]
    assert issue["severity"] == "error"
    return issue


@pytest.mark.parametrize("headers", PREFERS)
def test_a_parameter_some_of_the_types_lack_is_a_400_naming_it_and_them(seeded, headers):
    issue = the_error(seeded.get("/fhir?_type=Patient,Observation&family=muller", headers=headers))
    assert issue["expression"] == ["family"]
    lacking = issue["diagnostics"].split(";")[0]
    assert "family" in lacking and "Observation" in lacking and "Patient" not in lacking


@pytest.mark.parametrize("headers", PREFERS)
def test_without_type_the_parameter_must_be_common_to_every_type(seeded, headers):
    issue = the_error(seeded.get("/fhir?family=muller", headers=headers))
    assert issue["expression"] == ["family"]
    assert "Observation" in issue["diagnostics"] and "Account" in issue["diagnostics"]


@pytest.mark.parametrize("headers", PREFERS)
def test_a_modifier_some_of_the_types_cannot_take_is_a_400_too(seeded, headers):
    # lot-number is a string on Immunization (:exact applies) and a token on Medication (it does not)
    issue = the_error(seeded.get("/fhir?_type=Immunization,Medication&lot-number:exact=AB1", headers=headers))
    assert issue["expression"] == ["lot-number:exact"] and "Medication" in issue["diagnostics"]
    r = seeded.get("/fhir?_type=Immunization,Medication&lot-number=AB1", headers=headers)
    assert r.status_code == 200 and matches(r) == {("Immunization", "i1"), ("Medication", "m1")}


def test_a_parameter_common_to_the_types_filters_all_of_them(seeded):
    r = seeded.get("/fhir?_type=Patient,Practitioner&family=muller")
    assert r.status_code == 200
    assert matches(r) == {("Patient", "pm"), ("Practitioner", "dm")}
    self_link = next(link["url"] for link in r.json()["link"] if link["relation"] == "self")
    assert ("family", "muller") in parse_qsl(urlsplit(self_link).query)


def test_parameters_common_to_every_type_work_without_type(seeded):
    r = seeded.get("/fhir?_id=o1,dw&_lastUpdated=ge2000-01-01")
    assert r.status_code == 200 and matches(r) == {("Observation", "o1"), ("Practitioner", "dw")}


def test_a_parameter_none_of_the_types_has_is_still_ignored_with_a_warning(seeded):
    r = seeded.get("/fhir?_type=Patient,Observation&foo=bar&_count=50")
    assert r.status_code == 200
    assert matches(r) == {("Patient", "pm"), ("Patient", "pn"), ("Observation", "o1")}
    outcome = [e["resource"] for e in r.json()["entry"] if e["search"]["mode"] == "outcome"]
    assert [i["expression"] for o in outcome for i in o["issue"]] == [["foo"]]
    for link in r.json()["link"]:
        assert "foo" not in dict(parse_qsl(urlsplit(link["url"]).query))
    assert seeded.get("/fhir?_type=Patient,Observation&foo=bar", headers={"Prefer": "handling=strict"}).status_code == 400


def test_a_type_search_is_unaffected(seeded):
    r = seeded.get("/fhir/Patient?family=muller")
    assert r.status_code == 200 and matches(r) == {("Patient", "pm")}


def test_every_form_of_the_system_search_answers_alike(seeded):
    """http.html#search: GET [base]?params and POST [base]/_search with a form body; [base]/?params is
    how many clients write the first."""
    expected = {("Patient", "pm"), ("Patient", "pn"), ("Observation", "o1")}
    assert matches(seeded.get("/fhir?_type=Patient,Observation")) == expected
    assert matches(seeded.get("/fhir/?_type=Patient,Observation")) == expected
    posted = seeded.post("/fhir/_search", content="_type=Patient,Observation",
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert posted.status_code == 200 and matches(posted) == expected
    assert posted.json()["link"][0]["url"].endswith("/fhir?_type=Patient%2CObservation")
    assert seeded.head("/fhir/?_type=Patient").status_code == 200


def test_an_unknown_type_in_type_is_a_bad_parameter_not_a_missing_endpoint(seeded):
    for r in (seeded.get("/fhir?_type=Patient,Nope"), seeded.get("/fhir/Patient/pm/$everything?_type=Nope"),
              seeded.get("/fhir/Patient/pm/*?_type=Nope")):
        issue = the_error(r)
        assert issue["expression"] == ["_type"] and "Nope" in issue["diagnostics"]


def test_a_patient_compartment_search_across_its_types(seeded):
    """GET [base]/Patient/[id]/* (http.html#search): every resource of the compartment, of any type;
    _type narrows it."""
    r = seeded.get("/fhir/Patient/pm/*")
    assert r.status_code == 200
    assert matches(r) == {("Patient", "pm"), ("Observation", "o1"), ("Immunization", "i1")}
    assert r.json()["link"][0]["url"].endswith("/fhir/Patient/pm/*")
    assert matches(seeded.get("/fhir/Patient/pm/*?_type=Observation")) == {("Observation", "o1")}
    # a query parameter named like the typed route's path segment is no way to pick a type
    assert matches(seeded.get("/fhir/Patient/pm/*?resource_type=Observation")) == matches(r)
    assert matches(seeded.get("/fhir/Patient/pn/*")) == {("Patient", "pn")}
    assert the_error(seeded.get("/fhir/Patient/pm/*?_type=Medication"))["code"] == "invalid"


def ordered(r) -> list[tuple[str, str]]:
    return [(e["resource"]["resourceType"], e["resource"]["id"]) for e in r.json().get("entry", [])
            if e["search"]["mode"] == "match"]


def test_a_parameter_common_to_the_types_sorts_all_of_them(seeded):
    """search.html#_type: parameters common to the types can be used, _sort's keys too. It used to be
    refused ("Cannot sort by 'name'")."""
    r = seeded.get("/fhir?_type=Patient,Practitioner&_sort=name,_id", headers={"Prefer": "handling=strict"})
    assert r.status_code == 200, r.text
    assert ordered(r) == [("Practitioner", "dm"), ("Patient", "pm"), ("Patient", "pn"), ("Practitioner", "dw")]
    r = seeded.get("/fhir?_type=Patient,Practitioner&_sort=-name,_id")
    assert ordered(r) == [("Practitioner", "dw"), ("Patient", "pn"), ("Practitioner", "dm"), ("Patient", "pm")]
    # paging follows the same order
    got, url = [], "/fhir?_type=Patient,Practitioner&_sort=name,_id&_count=1"
    while url:
        page = seeded.get(url).json()
        got += [(e["resource"]["resourceType"], e["resource"]["id"]) for e in page.get("entry", [])]
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
    assert got == [("Practitioner", "dm"), ("Patient", "pm"), ("Patient", "pn"), ("Practitioner", "dw")]
    # a key not common to the types stays refused
    assert seeded.get("/fhir?_type=Patient,Observation&_sort=name",
                      headers={"Prefer": "handling=strict"}).status_code == 400
