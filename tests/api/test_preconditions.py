"""Conditional update without a match, and the HTTP preconditions of writes (http.html#cond-update,
#concurrency; RFC 9110 13.1)."""
from __future__ import annotations

import pytest

from tests.api.test_crud import patient

MRN = "http://mrn"


def identified(value: str, **extra) -> dict:
    return patient(identifier=[{"system": MRN, "value": value}], **extra)


# --- conditional update that matches nothing: a create, under the body's id if it has one ----------
# R4 http.html#cond-update: "No matches, no id provided: The server creates the resource. No matches, id
# provided: The server treats the interaction as an Update as Create interaction"; an id already taken is
# a 409 (R5: "No matches, id provided and already exist: The server rejects the update with a 409").

def test_conditional_update_without_a_match_or_an_id_creates_under_a_new_id(client):
    r = client.put(f"/fhir/Patient?identifier={MRN}|NOID", json=identified("NOID"))
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["meta"]["versionId"] == "1"
    assert r.headers["location"] == f"http://testserver/fhir/Patient/{created['id']}/_history/1"


def test_conditional_update_without_a_match_creates_under_the_body_id(client):
    r = client.put(f"/fhir/Patient?identifier={MRN}|NEW", json=identified("NEW", id="chosen"))
    assert r.status_code == 201, r.text
    assert r.headers["location"] == "http://testserver/fhir/Patient/chosen/_history/1"
    assert client.get("/fhir/Patient/chosen").json()["identifier"][0]["value"] == "NEW"
    again = client.put(f"/fhir/Patient?identifier={MRN}|NEW", json=identified("NEW", id="chosen", gender="male"))
    assert again.status_code == 200 and again.headers["etag"] == 'W/"2"'  # now the criteria match it


def test_conditional_update_without_a_match_never_overwrites_the_resource_its_id_names(client):
    victim = client.put("/fhir/Patient/victim", json=patient(id="victim", gender="female")).json()
    r = client.put(f"/fhir/Patient?identifier={MRN}|NOPE", json=identified("NOPE", id="victim", gender="male"))
    assert r.status_code == 409, r.text
    assert r.json()["issue"][0]["expression"] == ["Patient.id"]
    assert client.get("/fhir/Patient/victim").json() == victim
    assert client.get(f"/fhir/Patient?identifier={MRN}|NOPE").json()["total"] == 0


def test_conditional_update_without_a_match_brings_a_deleted_id_back(client):
    client.put("/fhir/Patient/gone", json=patient(id="gone"))
    client.delete("/fhir/Patient/gone")
    r = client.put(f"/fhir/Patient?identifier={MRN}|BACK", json=identified("BACK", id="gone"))
    assert r.status_code == 201, r.text
    assert r.headers["etag"] == 'W/"3"'


def test_conditional_update_without_a_match_and_an_invalid_id_is_400(client):
    r = client.put(f"/fhir/Patient?identifier={MRN}|BAD", json=identified("BAD", id="no_underscores"))
    assert r.status_code == 400
    assert client.get(f"/fhir/Patient?identifier={MRN}|BAD").json()["total"] == 0


def test_conditional_update_with_one_match_still_updates_it(client):
    client.put("/fhir/Patient/m1", json=identified("M1", id="m1"))
    r = client.put(f"/fhir/Patient?identifier={MRN}|M1", json=identified("M1", gender="other"))
    assert r.status_code == 200
    assert r.json()["id"] == "m1" and r.json()["meta"]["versionId"] == "2"


# --- If-Match on delete: only that version is deleted (http.html#concurrency, RFC 9110 13.1.1) --------

def two_versions(client, resource_id: str, **extra) -> None:
    client.put(f"/fhir/Patient/{resource_id}", json=patient(id=resource_id, **extra))
    assert client.put(f"/fhir/Patient/{resource_id}", json=patient(id=resource_id, gender="other", **extra)
                      ).headers["etag"] == 'W/"2"'


def test_delete_with_a_stale_if_match_is_412_and_deletes_nothing(client):
    two_versions(client, "dv")
    r = client.delete("/fhir/Patient/dv", headers={"If-Match": 'W/"1"'})
    assert r.status_code == 412
    assert r.json()["resourceType"] == "OperationOutcome"
    assert client.get("/fhir/Patient/dv").headers["etag"] == 'W/"2"'


def test_delete_with_the_current_version_or_star_deletes(client):
    two_versions(client, "dv")
    assert client.delete("/fhir/Patient/dv", headers={"If-Match": 'W/"2"'}).status_code == 204
    assert client.get("/fhir/Patient/dv").status_code == 410
    two_versions(client, "dstar")
    assert client.delete("/fhir/Patient/dstar", headers={"If-Match": "*"}).status_code == 204
    assert client.get("/fhir/Patient/dstar").status_code == 410


def test_delete_with_if_match_of_an_unknown_or_deleted_resource_is_412(client):
    """Nothing current matches the version: without If-Match such a delete is a 204 that writes nothing."""
    assert client.delete("/fhir/Patient/nobody", headers={"If-Match": 'W/"1"'}).status_code == 412
    assert client.delete("/fhir/Patient/nobody", headers={"If-Match": "*"}).status_code == 412
    client.put("/fhir/Patient/gone", json=patient(id="gone"))
    client.delete("/fhir/Patient/gone")
    for tag in ('W/"1"', 'W/"2"', "*"):  # the live version, the deletion's, any
        assert client.delete("/fhir/Patient/gone", headers={"If-Match": tag}).status_code == 412, tag
    assert client.get("/fhir/Patient/gone/_history").json()["total"] == 2
    assert client.delete("/fhir/Patient/nobody").status_code == 204


def test_an_entity_tag_naming_no_version_of_ours_matches_nothing(client):
    """W/"abc" is a well-formed ETag (RFC 9110 8.8.3) that no version here carries: If-Match fails (412),
    If-None-Match holds; neither is a malformed header."""
    two_versions(client, "et")
    for tag in ('W/"abc"', '"v2"', 'W/""'):
        assert client.put("/fhir/Patient/et", json=patient(id="et"), headers={"If-Match": tag}).status_code == 412, tag
        assert client.get("/fhir/Patient/et", headers={"If-None-Match": tag}).status_code == 200, tag
    assert client.delete("/fhir/Patient/et", headers={"If-Match": 'W/"abc", W/"2"'}).status_code == 204


def test_delete_with_a_malformed_if_match_is_400_and_deletes_nothing(client):
    client.put("/fhir/Patient/dm", json=patient(id="dm"))
    assert client.delete("/fhir/Patient/dm", headers={"If-Match": "version one"}).status_code == 400
    assert client.get("/fhir/Patient/dm").status_code == 200


def test_conditional_delete_honours_if_match_on_its_single_match(client):
    two_versions(client, "cd1", identifier=[{"system": MRN, "value": "CD1"}])
    assert client.delete(f"/fhir/Patient?identifier={MRN}|CD1", headers={"If-Match": 'W/"1"'}).status_code == 412
    assert client.get("/fhir/Patient/cd1").status_code == 200
    assert client.delete(f"/fhir/Patient?identifier={MRN}|CD1", headers={"If-Match": 'W/"2"'}).status_code == 204
    assert client.get("/fhir/Patient/cd1").status_code == 410


def test_conditional_delete_with_if_match_and_several_or_no_matches_is_412(client):
    for rid in ("many1", "many2"):
        client.put(f"/fhir/Patient/{rid}", json=identified("MANY", id=rid))
    for tag in ('W/"1"', "*"):
        assert client.delete(f"/fhir/Patient?identifier={MRN}|MANY", headers={"If-Match": tag}).status_code == 412
    assert client.get(f"/fhir/Patient?identifier={MRN}|MANY").json()["total"] == 2
    assert client.delete(f"/fhir/Patient?identifier={MRN}|NONE", headers={"If-Match": "*"}).status_code == 412
    assert client.delete(f"/fhir/Patient?identifier={MRN}|MANY").status_code == 204  # without: every match
    assert client.get(f"/fhir/Patient?identifier={MRN}|MANY").json()["total"] == 0


# --- If-Match without a match, If-None-Match on update (RFC 9110 13.1.1, 13.1.2) ----------------------

def test_conditional_update_with_if_match_and_no_match_is_412_and_creates_nothing(client):
    for tag in ('W/"1"', "*"):
        r = client.put(f"/fhir/Patient?identifier={MRN}|NOPE", json=identified("NOPE"), headers={"If-Match": tag})
        assert r.status_code == 412, (tag, r.text)
    assert client.get("/fhir/Patient/_history").json()["total"] == 0


def test_conditional_update_with_if_match_on_its_single_match(client):
    client.put("/fhir/Patient/m1", json=identified("M1", id="m1"))
    stale = client.put(f"/fhir/Patient?identifier={MRN}|M1", json=identified("M1"), headers={"If-Match": 'W/"2"'})
    assert stale.status_code == 412
    r = client.put(f"/fhir/Patient?identifier={MRN}|M1", json=identified("M1"), headers={"If-Match": 'W/"1"'})
    assert r.status_code == 200 and r.headers["etag"] == 'W/"2"'


def test_update_with_if_none_match_star_of_an_existing_resource_is_412(client):
    victim = client.put("/fhir/Patient/victim", json=patient(id="victim")).json()
    r = client.put("/fhir/Patient/victim", json=patient(id="victim", gender="male"), headers={"If-None-Match": "*"})
    assert r.status_code == 412
    assert r.json()["resourceType"] == "OperationOutcome"
    assert client.get("/fhir/Patient/victim").json() == victim


def test_update_with_if_none_match_star_creates_an_absent_or_deleted_resource(client):
    r = client.put("/fhir/Patient/fresh", json=patient(id="fresh"), headers={"If-None-Match": "*"})
    assert r.status_code == 201 and r.headers["etag"] == 'W/"1"'
    client.delete("/fhir/Patient/fresh")
    again = client.put("/fhir/Patient/fresh", json=patient(id="fresh"), headers={"If-None-Match": "*"})
    assert again.status_code == 201 and again.headers["etag"] == 'W/"3"'


def test_update_with_if_none_match_naming_the_current_version_is_412(client):
    """An ETag list fails the condition when it names the current version (weak comparison)."""
    client.put("/fhir/Patient/p1", json=patient(id="p1"))
    assert client.put("/fhir/Patient/p1", json=patient(id="p1"), headers={"If-None-Match": 'W/"7", W/"1"'}
                      ).status_code == 412
    r = client.put("/fhir/Patient/p1", json=patient(id="p1"), headers={"If-None-Match": 'W/"7"'})
    assert r.status_code == 200 and r.headers["etag"] == 'W/"2"'
    assert client.put("/fhir/Patient/p1", json=patient(id="p1"), headers={"If-None-Match": "garbage"}
                      ).status_code == 400
    assert client.get("/fhir/Patient/p1").headers["etag"] == 'W/"2"'


def test_conditional_update_with_if_none_match_star(client):
    client.put("/fhir/Patient/m1", json=identified("M1", id="m1"))
    assert client.put(f"/fhir/Patient?identifier={MRN}|M1", json=identified("M1"), headers={"If-None-Match": "*"}
                      ).status_code == 412
    created = client.put(f"/fhir/Patient?identifier={MRN}|M2", json=identified("M2"), headers={"If-None-Match": "*"})
    assert created.status_code == 201
    assert client.get("/fhir/Patient/m1").headers["etag"] == 'W/"1"'


# --- conditional read of a version (http.html#cread) ------------------------------------------------------

def test_vread_with_if_none_match_of_its_version_is_304(client):
    client.put("/fhir/Patient/v1", json=patient(id="v1"))
    client.put("/fhir/Patient/v1", json=patient(id="v1", gender="other"))
    r = client.get("/fhir/Patient/v1/_history/1", headers={"If-None-Match": 'W/"1"'})
    assert r.status_code == 304 and r.content == b"" and r.headers["etag"] == 'W/"1"'
    assert client.get("/fhir/Patient/v1/_history/1", headers={"If-None-Match": 'W/"2"'}).status_code == 200
    modified = client.get("/fhir/Patient/v1/_history/1").headers["last-modified"]
    assert client.get("/fhir/Patient/v1/_history/1", headers={"If-Modified-Since": modified}).status_code == 304


def test_etags_and_version_ids_compare_as_strings(client):
    """W/"0" and W/"01" name no version (an ETag is an opaque string, RFC 9110 8.8.3.2): W/"0" is no `*`,
    and a failing If-None-Match makes If-Modified-Since irrelevant (RFC 9110 13.1.3)."""
    r = client.put("/fhir/Patient/e1", json=patient(id="e1"))
    modified = r.headers["last-modified"]
    for tag in ('W/"0"', 'W/"01"'):
        assert client.get("/fhir/Patient/e1", headers={"If-None-Match": tag}).status_code == 200
        assert client.get("/fhir/Patient/e1", headers={"If-None-Match": tag, "If-Modified-Since": modified}
                          ).status_code == 200
        assert client.put("/fhir/Patient/e1", json=patient(id="e1"), headers={"If-Match": tag}).status_code == 412
    assert client.get("/fhir/Patient/e1/_history/01").status_code == 404
    assert client.get("/fhir/Patient/e1/_history/1").status_code == 200


def test_read_with_if_modified_since_counts_whole_seconds(client):
    """An HTTP-date names a second: a resource changed within that second is not modified since."""
    r = client.put("/fhir/Patient/s1", json=patient(id="s1"))
    since = r.headers["last-modified"]
    assert client.get("/fhir/Patient/s1", headers={"If-Modified-Since": since}).status_code == 304
    assert client.get("/fhir/Patient/s1", headers={"If-Modified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"}
                      ).status_code == 200


def test_if_modified_since_is_no_304_when_two_versions_share_its_second(client, monkeypatch):
    """RFC 9110 8.8.2.2: a Last-Modified date cannot tell apart two versions of one second. A client holding
    version 1 must not be told its copy is current when version 2 was written later in that second; once
    the current version is alone in its second, the date tells again."""
    from datetime import datetime, timezone

    from ipt_fhir.services import resources as rs

    clock = iter(datetime(2026, 3, 2, 10, 0, 0, ms * 1000, tzinfo=timezone.utc) for ms in (200, 700))
    monkeypatch.setattr(rs, "now_utc", lambda: next(clock))
    first = client.put("/fhir/Patient/twice", json=patient(id="twice"))
    client.put("/fhir/Patient/twice", json=patient(id="twice", active=True))
    since = {"If-Modified-Since": first.headers["last-modified"]}
    assert client.get("/fhir/Patient/twice", headers=since).status_code == 200
    assert client.get("/fhir/Patient/twice/_history/2", headers=since).status_code == 304  # a version never changes
    monkeypatch.setattr(rs, "now_utc", lambda: datetime(2026, 3, 2, 10, 0, 1, 100000, tzinfo=timezone.utc))
    third = client.put("/fhir/Patient/twice", json=patient(id="twice", active=False))
    since = {"If-Modified-Since": third.headers["last-modified"]}
    assert client.get("/fhir/Patient/twice", headers=since).status_code == 304


# --- If-Match with a list of ETags (RFC 9110 13.1.1: it holds when any of them matches) -------------------

JSON_PATCH = {"Content-Type": "application/json-patch+json"}
ACTIVE = b'[{"op": "add", "path": "/active", "value": true}]'


def test_if_match_with_a_list_holds_when_any_etag_names_the_current_version(client):
    two_versions(client, "lm", identifier=[{"system": MRN, "value": "LM"}])
    listed = {"If-Match": 'W/"7", W/"2"'}
    r = client.put("/fhir/Patient/lm", json=identified("LM", id="lm"), headers=listed)
    assert r.status_code == 200 and r.headers["etag"] == 'W/"3"', r.text
    r = client.patch("/fhir/Patient/lm", content=ACTIVE, headers={**JSON_PATCH, "If-Match": 'W/"1",W/"3" ,'})
    assert r.status_code == 200 and r.headers["etag"] == 'W/"4"', r.text
    r = client.put(f"/fhir/Patient?identifier={MRN}|LM", json=identified("LM"), headers={"If-Match": '"9", "4"'})
    assert r.status_code == 200 and r.headers["etag"] == 'W/"5"', r.text
    r = client.patch(f"/fhir/Patient?identifier={MRN}|LM", content=ACTIVE,
                     headers={**JSON_PATCH, "If-Match": 'W/"5", W/"6"'})
    assert r.status_code == 200 and r.headers["etag"] == 'W/"6"', r.text
    assert client.delete(f"/fhir/Patient?identifier={MRN}|LM", headers={"If-Match": 'W/"1", W/"6"'}).status_code == 204
    two_versions(client, "lm2")
    assert client.delete("/fhir/Patient/lm2", headers={"If-Match": 'W/"1", W/"2"'}).status_code == 204


def test_if_match_with_a_list_naming_no_current_version_is_412_and_a_malformed_item_400(client):
    two_versions(client, "ls")
    stale = client.put("/fhir/Patient/ls", json=patient(id="ls"), headers={"If-Match": 'W/"1", W/"3"'})
    assert stale.status_code == 412, stale.text
    assert client.delete("/fhir/Patient/ls", headers={"If-Match": 'W/"1", W/"3"'}).status_code == 412
    malformed = client.delete("/fhir/Patient/ls", headers={"If-Match": 'W/"2", garbage'})
    assert malformed.status_code == 400 and client.get("/fhir/Patient/ls").headers["etag"] == 'W/"2"'
    assert client.delete("/fhir/Patient/ls", headers={"If-Match": " , "}).status_code == 400


# If-Match with `*` or a list holding it (RFC 9110 13.1.1): false when there is no current
# representation, so an update of a deleted resource is refused, and nothing is written.
@pytest.mark.parametrize("tag", ["*", 'W/"7", *'])
def test_update_with_if_match_star_of_a_deleted_resource_is_412(client, tag):
    client.put("/fhir/Patient/gone", json=patient(id="gone"))
    client.delete("/fhir/Patient/gone")
    r = client.put("/fhir/Patient/gone", json=patient(id="gone"), headers={"If-Match": tag})
    assert r.status_code == 412, r.text
    assert client.get("/fhir/Patient/gone").status_code == 410
    assert client.get("/fhir/Patient/gone/_history").json()["total"] == 2
