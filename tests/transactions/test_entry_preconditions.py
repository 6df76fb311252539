"""Bundle entries: a conditional update that matches nothing creates, and the entry's request.ifMatch,
ifNoneMatch and ifModifiedSince are honoured as the standalone request's headers are (bundle.html,
Bundle.entry.request; http.html#cond-update, #cread, #concurrency)."""
from __future__ import annotations

from tests.transactions.conftest import post_bundle, table_counts
from tests.transactions.test_transaction import patient, put, tx

MRN = "http://mrn"


def identified(value: str, **extra) -> dict:
    return patient(identifier=[{"system": MRN, "value": value}], **extra)


def entries_of(response) -> list[dict]:
    assert response.status_code == 200, response.text
    return response.json()["entry"]


# --- conditional update that matches nothing: a create with a server-assigned id ----------------------

def test_a_transaction_conditional_update_without_a_match_leaves_the_body_ids_resource_alone(client):
    victim = client.put("/fhir/Patient/victim", json=patient(id="victim", gender="female")).json()
    [entry] = entries_of(post_bundle(client, tx(
        put(identified("NOPE", id="victim", gender="male"), f"Patient?identifier={MRN}|NOPE"))))
    assert entry["response"]["status"] == "201 Created"
    new_id = entry["response"]["location"].split("/")[1]
    assert new_id != "victim" and entry["resource"]["id"] == new_id
    assert client.get("/fhir/Patient/victim").json() == victim
    assert client.get(f"/fhir/Patient/{new_id}").json()["identifier"][0]["value"] == "NOPE"


def test_a_batch_conditional_update_without_a_match_leaves_the_body_ids_resource_alone(client):
    victim = client.put("/fhir/Patient/victim", json=patient(id="victim")).json()
    [entry] = entries_of(post_bundle(client, tx(
        put(identified("NOPE", id="victim", gender="male"), f"Patient?identifier={MRN}|NOPE"), kind="batch")))
    assert entry["response"]["status"] == "201 Created"
    assert entry["response"]["location"].split("/")[1] != "victim"
    assert client.get("/fhir/Patient/victim").json() == victim


def test_the_ignored_body_id_of_a_conditional_update_is_free_for_another_entry(client, database):
    """The conditional update claims no identity of its own: it creates a new one, so an update of the id
    its body named is another resource, and both entries are written."""
    first, second = entries_of(post_bundle(client, tx(
        put(identified("nobody", id="cu1"), f"Patient?identifier={MRN}|nobody"), put(patient(id="cu1")))))
    assert first["response"]["status"] == second["response"]["status"] == "201 Created"
    assert first["response"]["location"].split("/")[1] != "cu1"
    assert second["response"]["location"].startswith("Patient/cu1/")


def test_a_transaction_conditional_update_with_one_match_still_updates_it(client):
    client.put("/fhir/Patient/m1", json=identified("M1", id="m1"))
    [entry] = entries_of(post_bundle(client, tx(put(identified("M1", gender="other"), f"Patient?identifier={MRN}|M1"))))
    assert entry["response"]["status"] == "200 OK"
    assert entry["response"]["location"].startswith("Patient/m1/_history/2")
