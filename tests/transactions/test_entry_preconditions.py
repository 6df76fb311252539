"""Bundle entries: a conditional update that matches nothing creates, and the entry's request.ifMatch,
ifNoneMatch and ifModifiedSince are honoured as the standalone request's headers are (bundle.html,
Bundle.entry.request; http.html#cond-update, #cread, #concurrency)."""
from __future__ import annotations

from datetime import datetime, timedelta

from tests.api.test_preconditions import MRN, identified, two_versions
from tests.transactions.conftest import post_bundle, table_counts
from tests.transactions.test_transaction import patient, put, tx


def entries_of(response) -> list[dict]:
    assert response.status_code == 200, response.text
    return response.json()["entry"]


# --- conditional update that matches nothing: a create (under the body's id, if free) ---------------

def test_a_transaction_conditional_update_without_a_match_leaves_the_body_ids_resource_alone(client):
    victim = client.put("/fhir/Patient/victim", json=patient(id="victim", gender="female")).json()
    r = post_bundle(client, tx(put(identified("NOPE", id="victim", gender="male"), f"Patient?identifier={MRN}|NOPE")))
    assert r.status_code == 409, r.text  # the whole transaction fails
    assert client.get("/fhir/Patient/victim").json() == victim
    assert client.get(f"/fhir/Patient?identifier={MRN}|NOPE").json()["total"] == 0


def test_a_batch_conditional_update_without_a_match_leaves_the_body_ids_resource_alone(client):
    victim = client.put("/fhir/Patient/victim", json=patient(id="victim")).json()
    [entry] = entries_of(post_bundle(client, tx(
        put(identified("NOPE", id="victim", gender="male"), f"Patient?identifier={MRN}|NOPE"), kind="batch")))
    assert entry["response"]["status"].startswith("409")
    assert entry["response"]["outcome"]["issue"][0]["expression"] == ["Bundle.entry[0].resource.id"]
    assert client.get("/fhir/Patient/victim").json() == victim


def test_a_transaction_conditional_update_without_a_match_creates_under_the_body_id(client):
    [entry] = entries_of(post_bundle(client, tx(
        put(identified("FREE", id="free-id"), f"Patient?identifier={MRN}|FREE"))))
    assert entry["response"]["status"] == "201 Created"
    assert entry["response"]["location"].startswith("Patient/free-id/_history/1")


def test_a_transaction_conditional_update_with_one_match_still_updates_it(client):
    client.put("/fhir/Patient/m1", json=identified("M1", id="m1"))
    [entry] = entries_of(post_bundle(client, tx(put(identified("M1", gender="other"), f"Patient?identifier={MRN}|M1"))))
    assert entry["response"]["status"] == "200 OK"
    assert entry["response"]["location"].startswith("Patient/m1/_history/2")


# --- request.ifMatch on DELETE entries -----------------------------------------------------------------

def delete(url: str, **request) -> dict:
    return {"request": {"method": "DELETE", "url": url, **request}}


def test_a_transaction_delete_with_a_stale_if_match_fails_the_transaction(client, database):
    two_versions(client, "dv")
    before = table_counts(database)
    r = post_bundle(client, tx(delete("Patient/dv", ifMatch='W/"1"'), put(patient(id="other"))))
    assert r.status_code == 412, r.text
    assert r.json()["issue"][0]["expression"] == ["Bundle.entry[0]"]
    assert table_counts(database) == before
    [entry] = entries_of(post_bundle(client, tx(delete("Patient/dv", ifMatch='W/"2"'))))
    assert entry["response"]["status"] == "204 No Content"
    assert client.get("/fhir/Patient/dv").status_code == 410


def test_batch_delete_entries_honour_if_match(client):
    two_versions(client, "b1")
    two_versions(client, "b2")
    two_versions(client, "b3", identifier=[{"system": MRN, "value": "B3"}])
    entries = entries_of(post_bundle(client, tx(
        delete("Patient/b1", ifMatch='W/"1"'), delete("Patient/b2", ifMatch="*"),
        delete(f"Patient?identifier={MRN}|B3", ifMatch='W/"1"'), delete("Patient/unknown", ifMatch='W/"1"'),
        kind="batch")))
    assert [e["response"]["status"] for e in entries] == ["412", "204 No Content", "412", "412"]
    assert client.get("/fhir/Patient/b1").status_code == 200
    assert client.get("/fhir/Patient/b2").status_code == 410
    assert client.get("/fhir/Patient/b3").status_code == 200


def test_entry_if_match_takes_a_list_of_etags_as_the_header_does(client):
    """RFC 9110 13.1.1: the precondition holds when any listed ETag names the current version."""
    two_versions(client, "el1")
    two_versions(client, "el2")
    entries = entries_of(post_bundle(client, tx(
        put(patient(id="el1", active=True), ifMatch='W/"1", W/"2"'),
        delete("Patient/el2", ifMatch='W/"3", W/"4"'), kind="batch")))
    assert [e["response"]["status"][:3] for e in entries] == ["200", "412"]
    assert client.get("/fhir/Patient/el1").json()["active"] is True
    r = post_bundle(client, tx(delete("Patient/el2", ifMatch='W/"9",W/"2"')))
    assert r.status_code == 200 and client.get("/fhir/Patient/el2").status_code == 410


def test_a_conditional_delete_entry_with_if_match_and_several_matches_is_412(client):
    for rid in ("many1", "many2"):
        client.put(f"/fhir/Patient/{rid}", json=identified("MANY", id=rid))
    r = post_bundle(client, tx(delete(f"Patient?identifier={MRN}|MANY", ifMatch='W/"1"')))
    assert r.status_code == 412, r.text
    assert client.get(f"/fhir/Patient?identifier={MRN}|MANY").json()["total"] == 2


def test_a_malformed_if_match_on_a_delete_entry_is_400_at_the_element(client):
    client.put("/fhir/Patient/dm", json=patient(id="dm"))
    r = post_bundle(client, tx(delete("Patient/dm", ifMatch="version one")))
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == ["Bundle.entry[0].request.ifMatch"]
    assert client.get("/fhir/Patient/dm").status_code == 200


# --- ifMatch without a match, ifNoneMatch on PUT entries -------------------------------------------------

def test_a_conditional_update_entry_with_if_match_and_no_match_is_412(client, database):
    before = table_counts(database)
    r = post_bundle(client, tx(put(identified("NOPE"), f"Patient?identifier={MRN}|NOPE", ifMatch='W/"1"')))
    assert r.status_code == 412, r.text
    assert table_counts(database) == before
    [entry] = entries_of(post_bundle(client, tx(
        put(identified("NOPE"), f"Patient?identifier={MRN}|NOPE", ifMatch="*"), kind="batch")))
    assert entry["response"]["status"] == "412"
    assert table_counts(database) == before


def test_put_entries_honour_if_none_match(client):
    client.put("/fhir/Patient/victim", json=patient(id="victim"))
    client.put("/fhir/Patient/m1", json=identified("M1", id="m1"))
    entries = entries_of(post_bundle(client, tx(
        put(patient(id="victim", gender="male"), ifNoneMatch="*"),
        put(patient(id="fresh"), ifNoneMatch="*"),
        put(identified("M1"), f"Patient?identifier={MRN}|M1", ifNoneMatch='W/"1"'),
        put(patient(id="other"), ifNoneMatch="nonsense"),
        kind="batch")))
    assert [e["response"]["status"] for e in entries] == ["412", "201 Created", "412", "400"]
    assert entries[3]["response"]["outcome"]["issue"][0]["expression"] == ["Bundle.entry[3].request.ifNoneMatch"]
    assert client.get("/fhir/Patient/victim").headers["etag"] == 'W/"1"'
    assert client.get("/fhir/Patient/m1").headers["etag"] == 'W/"1"'
    assert client.get("/fhir/Patient/other").status_code == 404


# --- request.ifNoneMatch and ifModifiedSince on read entries (http.html#cread) ------------------------------

def get(url: str, method: str = "GET", **request) -> dict:
    return {"request": {"method": method, "url": url, **request}}


def three_versions(client, resource_id: str) -> dict:
    for gender in ("male", "female", "other"):
        last = client.put(f"/fhir/Patient/{resource_id}", json=patient(id=resource_id, gender=gender))
    assert last.headers["etag"] == 'W/"3"'
    return last.json()


def test_a_read_entry_with_if_none_match_of_the_current_version_is_304_without_the_resource(client):
    current = three_versions(client, "c3")
    for kind in ("batch", "transaction"):
        not_modified, star, modified = entries_of(post_bundle(client, tx(
            get("Patient/c3", ifNoneMatch='W/"3"'), get("Patient/c3", ifNoneMatch="*"),
            get("Patient/c3", ifNoneMatch='W/"2"'), kind=kind)))
        for entry in (not_modified, star):
            assert entry["response"]["status"] == "304 Not Modified", kind
            assert entry["response"]["etag"] == 'W/"3"'
            assert entry["response"]["lastModified"] == current["meta"]["lastUpdated"]
            assert "resource" not in entry
        assert modified["response"]["status"] == "200 OK" and modified["resource"] == current


def test_a_read_entry_with_if_modified_since_is_304_unless_modified_after_it(client):
    current = three_versions(client, "c3")
    last_updated = datetime.fromisoformat(current["meta"]["lastUpdated"])
    later, same, earlier = (t.isoformat() for t in (last_updated + timedelta(seconds=5), last_updated,
                                                     last_updated - timedelta(milliseconds=1)))
    entries = entries_of(post_bundle(client, tx(
        get("Patient/c3", ifModifiedSince=later), get("Patient/c3", ifModifiedSince=same),
        get("Patient/c3", ifModifiedSince=earlier),
        get("Patient/c3", ifModifiedSince=later, ifNoneMatch='W/"2"'),  # If-None-Match wins (RFC 9110 13.2.2)
        kind="batch")))
    assert [e["response"]["status"] for e in entries] == ["304 Not Modified", "304 Not Modified", "200 OK", "200 OK"]
    assert [("resource" in e) for e in entries] == [False, False, True, True]


def test_a_vread_entry_with_if_none_match_of_its_version_is_304(client):
    three_versions(client, "c3")
    same, other = entries_of(post_bundle(client, tx(
        get("Patient/c3/_history/2", ifNoneMatch='W/"2"'), get("Patient/c3/_history/2", ifNoneMatch='W/"3"'),
        kind="batch")))
    assert same["response"]["status"] == "304 Not Modified" and "resource" not in same
    assert other["response"]["status"] == "200 OK" and other["resource"]["meta"]["versionId"] == "2"


def test_read_entry_preconditions_do_not_hide_a_deletion_or_an_unknown_resource(client):
    client.put("/fhir/Patient/gone", json=patient(id="gone"))
    client.delete("/fhir/Patient/gone")
    entries = entries_of(post_bundle(client, tx(
        get("Patient/gone", ifNoneMatch="*"), get("Patient/nobody", ifNoneMatch="*"), kind="batch")))
    assert [e["response"]["status"] for e in entries] == ["410", "404"]


def test_malformed_read_entry_preconditions_are_400_at_their_element(client):
    client.put("/fhir/Patient/p1", json=patient(id="p1"))
    bad_tag, bad_instant, no_zone = entries_of(post_bundle(client, tx(
        get("Patient/p1", ifNoneMatch="three"), get("Patient/p1", ifModifiedSince="yesterday"),
        get("Patient/p1", ifModifiedSince="2020-01-01T00:00:00"), kind="batch")))
    assert bad_tag["response"]["status"] == "400"
    assert bad_tag["response"]["outcome"]["issue"][0]["expression"] == ["Bundle.entry[0].request.ifNoneMatch"]
    for index, entry in ((1, bad_instant), (2, no_zone)):
        assert entry["response"]["status"] == "400"
        assert entry["response"]["outcome"]["issue"][0]["expression"] == [f"Bundle.entry[{index}].request.ifModifiedSince"]



# --- HEAD entries: the status and version, no body --------------------------------------------------------------

def test_head_entries_answer_without_a_body(client):
    current = three_versions(client, "c3")
    for kind in ("batch", "transaction"):
        read, vread, search, unchanged = entries_of(post_bundle(client, tx(
            get("Patient/c3", "HEAD"), get("Patient/c3/_history/1", "HEAD"), get("Patient?_id=c3", "HEAD"),
            get("Patient/c3", "HEAD", ifNoneMatch='W/"3"'), kind=kind)))
        assert read["response"]["status"] == "200 OK" and read["response"]["etag"] == 'W/"3"'
        assert read["response"]["lastModified"] == current["meta"]["lastUpdated"]
        assert vread["response"]["status"] == "200 OK" and vread["response"]["etag"] == 'W/"1"'
        assert search["response"]["status"] == "200 OK"
        assert unchanged["response"]["status"] == "304 Not Modified"
        assert not any("resource" in e for e in (read, vread, search, unchanged)), kind


def test_a_transaction_failing_on_a_deleted_resource_carries_no_etag_of_it(client):
    """The 410 of GET [type]/[id] has the deleted version's ETag; a transaction that fails on such an
    entry answers for the Bundle endpoint, whose version that is not."""
    client.put("/fhir/Patient/gone", json=patient(id="gone"))
    client.delete("/fhir/Patient/gone")
    assert client.get("/fhir/Patient/gone").headers["ETag"] == 'W/"2"'
    r = post_bundle(client, tx(get("Patient/gone")))
    assert r.status_code == 410, r.text
    assert "ETag" not in r.headers
