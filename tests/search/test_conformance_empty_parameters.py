"""Empty parameters are ignored (search.html#errors: "Note: Empty parameters are not an error - they are
just ignored by the server"): a search, result or modifier parameter with no value filters nothing, is no
400, gets no warning and is in none of the Bundle's links; a value that is there is still checked.
"""
from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest

from .harness import put

BASE = "http://testserver/fhir"
EVERY_PATIENT = {"ng", "smith", "nameless"}


@pytest.fixture
def seeded(database, client):
    put(database, {"resourceType": "Patient", "id": "ng", "name": [{"family": "Ng"}], "gender": "female",
                   "birthDate": "1980-01-01", "identifier": [{"system": "urn:s", "value": "1"}]})
    put(database, {"resourceType": "Patient", "id": "smith", "name": [{"family": "Smith"}], "gender": "male"})
    put(database, {"resourceType": "Patient", "id": "nameless"})  # no name, gender or birth date
    put(database, {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"},
                   "subject": {"reference": "Patient/ng"}})
    return client


def matches(body: dict) -> set[str]:
    return {e["resource"]["id"] for e in body.get("entry", []) if e["search"]["mode"] == "match"}


def outcomes(body: dict) -> list[dict]:
    return [e["resource"] for e in body.get("entry", []) if e["search"]["mode"] == "outcome"]


def link_names(body: dict) -> set[str]:
    return {n for link in body["link"] for n, _ in parse_qsl(urlsplit(link["url"]).query, keep_blank_values=True)}


@pytest.mark.parametrize("empty", [
    "family", "gender", "_id", "birthdate", "identifier", "_lastUpdated", "family:exact", "gender:not",
    "family:missing", "general-practitioner.name", "_has:Observation:subject:code", "foo",
    "_count", "_include", "_revinclude", "_sort", "_summary", "_elements", "_total", "_contained", "_type",
])
@pytest.mark.parametrize("headers", [{}, {"Prefer": "handling=strict"}])
def test_an_empty_parameter_is_ignored(seeded, empty, headers):
    r = seeded.get(f"/fhir/Patient?{empty}=", headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert matches(body) == EVERY_PATIENT
    assert outcomes(body) == []
    assert link_names(body) == set()
    assert body["link"][0] == {"relation": "self", "url": f"{BASE}/Patient"}
    assert all("SUBSETTED" not in str(e["resource"].get("meta")) for e in body["entry"])


def test_the_other_parameters_still_apply_and_alone_are_in_the_links(seeded):
    body = seeded.get("/fhir/Patient?family=ng&gender=&_count=1&_sort=").json()
    assert matches(body) == {"ng"}
    self_link = next(link["url"] for link in body["link"] if link["relation"] == "self")
    assert parse_qsl(urlsplit(self_link).query, keep_blank_values=True) == [("family", "ng"), ("_count", "1")]


def test_post_search_ignores_empty_form_parameters(seeded):
    r = seeded.post("/fhir/Patient/_search", data={"gender": "", "_id": "", "family": "smith"})
    assert r.status_code == 200
    assert matches(r.json()) == {"smith"}


def test_compartment_system_and_everything_ignore_them_too(seeded):
    assert matches(seeded.get("/fhir/Patient/ng/Observation?code=&_count=").json()) == {"o1"}
    assert matches(seeded.get("/fhir?_type=Patient&gender=&_count=").json()) == EVERY_PATIENT
    body = seeded.get("/fhir/Patient/ng/$everything?_since=&_count=&_type=&foo=").json()
    assert matches(body) == {"ng", "o1"} and outcomes(body) == [] and link_names(body) == set()


def test_a_value_that_is_there_is_still_checked(seeded):
    for query in ("birthdate=1980-99", "_count=x", "_include=Bogus:x", "family=%00", "family%00="):
        assert seeded.get(f"/fhir/Patient?{query}").status_code == 400, query


def test_conditional_criteria_ignore_them_and_need_a_value(seeded):
    existing = seeded.post("/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": "Ng"}]},
                           headers={"If-None-Exist": "identifier=urn:s|1&family="})
    assert existing.status_code == 200 and existing.json()["id"] == "ng"
    nothing = seeded.post("/fhir/Patient", json={"resourceType": "Patient"}, headers={"If-None-Exist": "family="})
    assert nothing.status_code == 400


def test_a_read_ignores_empty_summary_and_elements(seeded):
    r = seeded.get("/fhir/Patient/ng?_summary=&_elements=")
    assert r.status_code == 200
    assert r.json()["birthDate"] == "1980-01-01" and "tag" not in r.json()["meta"]
