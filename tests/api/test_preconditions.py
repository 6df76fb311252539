"""Conditional update without a match, and the HTTP preconditions of writes (http.html#cond-update,
#concurrency; RFC 9110 13.1)."""
from __future__ import annotations

from tests.api.test_crud import patient

MRN = "http://mrn"


def identified(value: str, **extra) -> dict:
    return patient(identifier=[{"system": MRN, "value": value}], **extra)


# --- conditional update that matches nothing: a create, whatever id the body carries --------------

def test_conditional_update_without_a_match_ignores_the_body_id_and_leaves_that_resource_alone(client):
    victim = client.put("/fhir/Patient/victim", json=patient(id="victim", gender="female")).json()
    r = client.put(f"/fhir/Patient?identifier={MRN}|NOPE", json=identified("NOPE", id="victim", gender="male"))
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["id"] != "victim" and created["meta"]["versionId"] == "1"
    assert r.headers["location"] == f"http://testserver/fhir/Patient/{created['id']}/_history/1"
    assert client.get("/fhir/Patient/victim").json() == victim


def test_conditional_update_without_a_match_does_not_take_the_body_id_even_when_it_is_free(client):
    r = client.put(f"/fhir/Patient?identifier={MRN}|NEW", json=identified("NEW", id="chosen"))
    assert r.status_code == 201
    assert r.json()["id"] != "chosen"
    assert client.get("/fhir/Patient/chosen").status_code == 404


def test_conditional_update_with_one_match_still_updates_it(client):
    client.put("/fhir/Patient/m1", json=identified("M1", id="m1"))
    r = client.put(f"/fhir/Patient?identifier={MRN}|M1", json=identified("M1", gender="other"))
    assert r.status_code == 200
    assert r.json()["id"] == "m1" and r.json()["meta"]["versionId"] == "2"
