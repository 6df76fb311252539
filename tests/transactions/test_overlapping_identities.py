"""http.html#trules: "If any resource identities (including resolved identities from conditional
update/delete) overlap in steps 1-3, then the transaction SHALL fail." A batch answers such entries one
by one (http.html#brules: batch entries must not depend on each other; servers SHOULD check)."""
from __future__ import annotations

import base64
import json

from tests.transactions.conftest import post_bundle, table_counts
from tests.transactions.test_transaction import patient, put, tx


def identified(value: str, **extra) -> dict:
    return patient(identifier=[{"system": "urn:s", "value": value}], **extra)


def delete(url: str) -> dict:
    return {"request": {"method": "DELETE", "url": url}}


def json_patch(url: str, *operations: dict) -> dict:
    data = base64.b64encode(json.dumps(list(operations)).encode()).decode()
    return {"resource": {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": data},
            "request": {"method": "PATCH", "url": url}}


def assert_refused_at(response, index: int) -> None:
    assert response.status_code == 400, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert [e for i in outcome["issue"] for e in i["expression"]] == [f"Bundle.entry[{index}].request.url"]
    assert "also the target of entry" in outcome["issue"][0]["diagnostics"]


def test_an_update_and_a_conditional_update_of_the_same_resource_are_refused(client, database):
    client.put("/fhir/Patient/dup2", json=identified("dup2", id="dup2"))
    before = table_counts(database)
    r = post_bundle(client, tx(put(identified("dup2", id="dup2", gender="male")),
                               put(identified("dup2", gender="female"), "Patient?identifier=urn:s|dup2")))
    assert_refused_at(r, 1)
    assert table_counts(database) == before
    assert client.get("/fhir/Patient/dup2").json()["meta"]["versionId"] == "1"


def test_the_later_entry_is_named_whichever_of_the_two_is_conditional(client, database):
    client.put("/fhir/Patient/dup3", json=identified("dup3", id="dup3"))
    r = post_bundle(client, tx(put(identified("dup3"), "Patient?identifier=urn:s|dup3"),
                               put(identified("dup3", id="dup3"))))
    assert_refused_at(r, 1)


def test_a_conditional_delete_and_an_update_of_what_it_deletes_are_refused(client, database):
    client.put("/fhir/Patient/ov1", json=patient(id="ov1", identifier=[{"system": "urn:ov", "value": "1"}]))
    before = table_counts(database)
    r = post_bundle(client, tx(delete("Patient?identifier=urn:ov|1"),
                               put(patient(id="ov1", identifier=[{"system": "urn:ov", "value": "1"}]))))
    assert_refused_at(r, 1)
    assert table_counts(database) == before
    assert client.get("/fhir/Patient/ov1").status_code == 200


def test_a_delete_and_a_conditional_update_that_matched_the_deleted_resource_are_refused(client, database):
    # The update's criteria match ov2 before the delete runs and nothing after it: the outcome would
    # depend on the order of processing, which is what the rule forbids.
    client.put("/fhir/Patient/ov2", json=identified("ov2", id="ov2"))
    before = table_counts(database)
    r = post_bundle(client, tx(delete("Patient/ov2"), put(identified("ov2"), "Patient?identifier=urn:s|ov2")))
    assert_refused_at(r, 1)
    assert table_counts(database) == before


def test_every_resource_a_conditional_delete_would_delete_counts(client, database):
    for pid in ("m1", "m2", "m3"):
        client.put(f"/fhir/Patient/{pid}", json=patient(id=pid, name=[{"family": "Many"}]))
    before = table_counts(database)
    r = post_bundle(client, tx(put(patient(id="m2", gender="other")), delete("Patient?family=Many")))
    assert_refused_at(r, 1)
    assert "Patient/m2" in r.json()["issue"][0]["diagnostics"]
    assert table_counts(database) == before


def test_a_conditional_patch_counts_as_the_resource_it_matches(client, database):
    client.put("/fhir/Patient/cp1", json=identified("cp1", id="cp1"))
    before = table_counts(database)
    patch = json_patch("Patient?identifier=urn:s|cp1", {"op": "add", "path": "/gender", "value": "other"})
    r = post_bundle(client, tx(patch, delete("Patient/cp1")))
    assert_refused_at(r, 1)
    assert table_counts(database) == before


def test_a_conditional_update_without_match_claims_the_id_it_creates_under(client, database):
    """It is an update as create under the body's id (http.html#cond-update): a PUT of that id in the same
    transaction acts on the same resource."""
    before = table_counts(database)
    r = post_bundle(client, tx(put(identified("nobody", id="cu1"), "Patient?identifier=urn:s|nobody"),
                               put(patient(id="cu1"))))
    assert_refused_at(r, 1)
    assert table_counts(database) == before


def test_a_conditional_update_without_match_or_id_claims_a_new_identity(client):
    r = post_bundle(client, tx(put(identified("nobody2"), "Patient?identifier=urn:s|nobody2"),
                               put(patient(id="cu2"))))
    assert r.status_code == 200, r.text
    first, second = (e["response"] for e in r.json()["entry"])
    assert first["status"] == second["status"] == "201 Created"
    assert not first["location"].startswith("Patient/cu2/")
    assert second["location"].startswith("Patient/cu2/")


def test_a_conditional_update_without_match_creates_under_the_body_id(client):
    r = post_bundle(client, tx(put(identified("chosen-tx", id="chosen-tx"), "Patient?identifier=urn:s|chosen-tx")))
    assert r.status_code == 200, r.text
    assert r.json()["entry"][0]["response"]["location"].startswith("Patient/chosen-tx/_history/1")
    client.put("/fhir/Patient/taken", json=patient(id="taken"))
    r = post_bundle(client, tx(put(identified("other-tx", id="taken"), "Patient?identifier=urn:s|other-tx")))
    assert r.status_code == 409, r.text
    assert r.json()["issue"][0]["expression"] == ["Bundle.entry[0].resource.id"]


def test_conditional_entries_on_different_resources_pass(client):
    client.put("/fhir/Patient/a1", json=identified("a1", id="a1"))
    client.put("/fhir/Patient/b1", json=identified("b1", id="b1"))
    r = post_bundle(client, tx(delete("Patient?identifier=urn:s|a1"),
                               put(identified("b1", gender="female"), "Patient?identifier=urn:s|b1"),
                               put(identified("c1"), "Patient?identifier=urn:s|c1"),
                               {"request": {"method": "GET", "url": "Patient/b1"}}))
    assert r.status_code == 200, r.text
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    assert statuses == ["204 No Content", "200 OK", "201 Created", "200 OK"]
    assert client.get("/fhir/Patient/a1").status_code == 410
    assert client.get("/fhir/Patient/b1").json()["gender"] == "female"


def test_a_batch_answers_the_overlapping_entry_alone(client):
    client.put("/fhir/Patient/dup2", json=identified("dup2", id="dup2"))
    r = post_bundle(client, tx(put(identified("dup2", id="dup2", gender="male")),
                               put(identified("dup2", gender="female"), "Patient?identifier=urn:s|dup2"),
                               put(patient(id="other")),
                               kind="batch"))
    assert r.status_code == 200, r.text
    entries = r.json()["entry"]
    assert [e["response"]["status"] for e in entries] == ["200 OK", "400", "201 Created"]
    issue = entries[1]["response"]["outcome"]["issue"][0]
    assert issue["expression"] == ["Bundle.entry[1].request.url"] and "entry 0" in issue["diagnostics"]
    stored = client.get("/fhir/Patient/dup2").json()
    assert stored["meta"]["versionId"] == "2" and stored["gender"] == "male"


def test_a_batch_refuses_a_conditional_delete_of_a_resource_another_entry_updates(client):
    client.put("/fhir/Patient/ov1", json=patient(id="ov1", identifier=[{"system": "urn:ov", "value": "1"}]))
    r = post_bundle(client, tx(delete("Patient?identifier=urn:ov|1"),
                               put(patient(id="ov1", gender="male")), kind="batch"))
    assert r.status_code == 200, r.text
    assert [e["response"]["status"] for e in r.json()["entry"]] == ["204 No Content", "400"]
    assert client.get("/fhir/Patient/ov1").status_code == 410
