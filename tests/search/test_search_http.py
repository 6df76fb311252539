"""Search over HTTP: GET, POST _search, compartment, $everything, links on the caller's base."""
from __future__ import annotations

import pytest

from .harness import put


@pytest.fixture
def seeded(database, client):
    put(database, {"resourceType": "Patient", "id": "p1", "name": [{"family": "Ng"}], "birthDate": "1980-01-01"})
    put(database, {"resourceType": "Patient", "id": "p2", "name": [{"family": "Smith"}]})
    for i in range(3):
        put(database, {"resourceType": "Encounter", "id": f"e{i}", "status": "finished", "class": {"code": "AMB"},
                       "subject": {"reference": "Patient/p1"}, "period": {"start": f"2025-0{i + 1}-01", "end": f"2025-0{i + 1}-02"}})
    put(database, {"resourceType": "Encounter", "id": "e9", "status": "finished", "class": {"code": "AMB"},
                   "subject": {"reference": "Patient/p2"}, "period": {"start": "2025-01-01"}})
    return client


def test_get_and_post_search_give_the_same_matches(seeded):
    g = seeded.get("/fhir/Encounter", params={"patient": "p1", "date": "ge2025-02-01"})
    p = seeded.post("/fhir/Encounter/_search", data={"patient": "p1", "date": "ge2025-02-01"})
    assert g.status_code == p.status_code == 200
    assert g.headers["content-type"].startswith("application/fhir+json")
    ids = lambda r: sorted(e["resource"]["id"] for e in r.json()["entry"])  # noqa: E731
    assert ids(g) == ids(p) == ["e1", "e2"]


def test_links_use_the_base_the_client_called(seeded):
    r = seeded.get("/fhir/Encounter?_count=2&_sort=-date",
                   headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "fhir.example.org"})
    b = r.json()
    links = {link["relation"]: link["url"] for link in b["link"]}
    assert links["next"].startswith("https://fhir.example.org/fhir/Encounter?")
    assert b["entry"][0]["fullUrl"].startswith("https://fhir.example.org/fhir/Encounter/")
    nxt = seeded.get(links["next"].replace("https://fhir.example.org", ""))
    assert len(nxt.json()["entry"]) == 2


def test_compartment_and_everything(seeded):
    r = seeded.get("/fhir/Patient/p1/Encounter")
    assert sorted(e["resource"]["id"] for e in r.json()["entry"]) == ["e0", "e1", "e2"]
    r = seeded.get("/fhir/Patient/p1/$everything")
    got = {(e["resource"]["resourceType"], e["resource"]["id"]) for e in r.json()["entry"]}
    assert got == {("Patient", "p1"), ("Encounter", "e0"), ("Encounter", "e1"), ("Encounter", "e2")}
    r = seeded.get("/fhir/Patient/p1/$everything?_type=Patient")
    assert [e["resource"]["id"] for e in r.json()["entry"]] == ["p1"]
    assert seeded.get("/fhir/Patient/nope/$everything").status_code == 404


def test_errors_are_operation_outcomes(seeded):
    r = seeded.get("/fhir/Nope?x=1")
    assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"
    r = seeded.get("/fhir/Patient?birthdate=1980-99")
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"
    r = seeded.get("/fhir/Patient?foo=1", headers={"Prefer": "handling=strict"})
    assert r.status_code == 400
    r = seeded.get("/fhir/Patient?foo=1")
    assert r.status_code == 200
    assert r.json()["entry"][0]["search"]["mode"] == "outcome"


def test_system_search_with_type(seeded):
    r = seeded.get("/fhir?_type=Patient&_count=50")
    assert sorted(e["resource"]["id"] for e in r.json()["entry"]) == ["p1", "p2"]


def test_compartment_search_by_post_is_the_get_search(seeded):
    # http.html#search: the compartment searches take POST .../_search with a form body, as type searches do
    g = seeded.get("/fhir/Patient/p1/Encounter", params={"date": "ge2025-02-01"})
    p = seeded.post("/fhir/Patient/p1/Encounter/_search", data={"date": "ge2025-02-01"})
    assert g.status_code == p.status_code == 200
    ids = lambda r: sorted(e["resource"]["id"] for e in r.json()["entry"])  # noqa: E731
    assert ids(g) == ids(p) == ["e1", "e2"]
    every_type = seeded.post("/fhir/Patient/p1/_search", data={"_type": "Encounter"})
    assert every_type.status_code == 200 and ids(every_type) == ["e0", "e1", "e2"]
    assert seeded.post("/fhir/Patient/p2/Encounter/_search").json()["total"] == 1


def test_a_malformed_reference_value_names_its_parameter(seeded):
    r = seeded.get("/fhir/Encounter?subject=a/b/c")
    assert r.status_code == 400
    issue = r.json()["issue"][0]
    assert issue["expression"] == ["subject"] and "a/b/c" in issue["diagnostics"]
