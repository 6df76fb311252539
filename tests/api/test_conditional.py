"""Conditional create, update and delete (http://hl7.org/fhir/R4/http.html#cond-update)."""
from __future__ import annotations

import asyncio

import httpx

from tests.api.test_crud import patient
from tests.live_server import running

IDENT = {"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345"}
CRITERIA = f"identifier={IDENT['system']}|{IDENT['value']}"


def test_if_none_exist_creates_once_then_returns_the_existing_resource(client):
    first = client.post("/fhir/Patient", json=patient(identifier=[IDENT]), headers={"If-None-Exist": CRITERIA})
    assert first.status_code == 201
    again = client.post("/fhir/Patient", json=patient(identifier=[IDENT]), headers={"If-None-Exist": CRITERIA})
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert client.get("/fhir/Patient/_history").json()["total"] == 1


def test_if_none_exist_with_several_matches_is_412(client):
    for _ in range(2):
        client.post("/fhir/Patient", json=patient(identifier=[IDENT]))
    r = client.post("/fhir/Patient", json=patient(identifier=[IDENT]), headers={"If-None-Exist": CRITERIA})
    assert r.status_code == 412
    assert r.json()["issue"][0]["code"] == "multiple-matches"


def test_if_none_exist_may_name_the_type_as_a_search_url_does(client):
    first = client.post("/fhir/Patient", json=patient(identifier=[IDENT]), headers={"If-None-Exist": f"Patient?{CRITERIA}"})
    assert first.status_code == 201
    again = client.post("/fhir/Patient", json=patient(identifier=[IDENT]), headers={"If-None-Exist": f"?{CRITERIA}"})
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    other = client.post("/fhir/Patient", json=patient(), headers={"If-None-Exist": f"Observation?{CRITERIA}"})
    assert other.status_code == 400


def test_criteria_in_the_url_of_a_create_make_it_conditional(client):
    """`POST [type]?criteria`, as fhirpy's get_or_create sends it: taken as If-None-Exist, never ignored
    (a duplicate on every call); _format and _pretty are no criteria."""
    first = client.post("/fhir/Patient", params={"identifier": f"{IDENT['system']}|{IDENT['value']}"},
                        json=patient(identifier=[IDENT]))
    assert first.status_code == 201
    again = client.post("/fhir/Patient", params={"identifier": f"{IDENT['system']}|{IDENT['value']}", "_pretty": "true"},
                        json=patient(identifier=[IDENT]))
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    plain = client.post("/fhir/Patient", params={"_format": "json"}, json=patient(identifier=[IDENT]))
    assert plain.status_code == 201  # no criteria: a plain create
    both = client.post("/fhir/Patient", params={"identifier": "x|1"}, json=patient(), headers={"If-None-Exist": CRITERIA})
    assert both.status_code == 400 and both.json()["issue"][0]["expression"] == ["If-None-Exist"]
    several = client.post("/fhir/Patient", params={"identifier": f"{IDENT['system']}|{IDENT['value']}"}, json=patient())
    assert several.status_code == 412


def test_if_none_exist_by_id(client):
    rid = client.put("/fhir/Patient/p1", json=patient(id="p1")).json()["id"]
    r = client.post("/fhir/Patient", json=patient(), headers={"If-None-Exist": "_id=p1"})
    assert r.status_code == 200 and r.json()["id"] == rid


def _fifty_at_once(app, send) -> tuple[list[httpx.Response], int]:  # noqa: ANN001
    """`send(http, i)` for i in 0..49, all at once against a live server: the responses, and how many
    Patients exist afterwards."""
    async def fire(base: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            return await asyncio.gather(*[send(http, i) for i in range(50)])

    with running(app) as base:
        responses = asyncio.run(fire(base))
        patients = httpx.get(f"{base}/fhir/Patient", params={"_summary": "count"}).json()["total"]
    return responses, patients


def test_fifty_concurrent_conditional_creates_make_exactly_one_resource(app):
    # half of them add an empty parameter: the same criteria (search.html: empty parameters are ignored)
    forms = [CRITERIA, f"{CRITERIA}&family="]
    responses, patients = _fifty_at_once(app, lambda http, i: http.post(
        "/fhir/Patient", json=patient(identifier=[IDENT]), headers={"If-None-Exist": forms[i % 2]}))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) == 1 and statuses.count(200) == 49, statuses
    assert {(r.json()["id"], r.json()["meta"]["versionId"]) for r in responses} == {(responses[0].json()["id"], "1")}
    assert patients == 1


def test_conditional_update_creates_when_nothing_matches_and_updates_the_single_match(client):
    created = client.put(f"/fhir/Patient?{CRITERIA}", json=patient(identifier=[IDENT]))
    assert created.status_code == 201
    rid = created.json()["id"]
    updated = client.put(f"/fhir/Patient?{CRITERIA}", json=patient(identifier=[IDENT], gender="male"))
    assert updated.status_code == 200
    assert updated.json()["id"] == rid and updated.json()["meta"]["versionId"] == "2"


def test_fifty_concurrent_conditional_updates_create_one_resource_and_update_it(app):
    """The first conditional update creates; the others, racing it, find and update that resource."""
    responses, patients = _fifty_at_once(app, lambda http, i: http.put(
        f"/fhir/Patient?{CRITERIA}", json=patient(identifier=[IDENT], birthDate=f"1970-01-{1 + i % 28:02d}")))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) == 1 and statuses.count(200) == 49, statuses
    assert len({r.json()["id"] for r in responses}) == 1
    assert sorted(int(r.json()["meta"]["versionId"]) for r in responses) == list(range(1, 51))
    assert patients == 1


def test_conditional_update_creates_again_once_the_earlier_match_no_longer_matches(client):
    first = client.put(f"/fhir/Patient?{CRITERIA}", json=patient(identifier=[IDENT]))
    assert first.status_code == 201
    moved = {**first.json(), "identifier": [{"system": IDENT["system"], "value": "moved"}]}
    assert client.put(f"/fhir/Patient/{moved['id']}", json=moved).status_code == 200
    second = client.put(f"/fhir/Patient?{CRITERIA}", json=patient(identifier=[IDENT]))
    assert second.status_code == 201 and second.json()["id"] != first.json()["id"]
    again = client.post("/fhir/Patient", json=patient(identifier=[IDENT]), headers={"If-None-Exist": CRITERIA})
    assert again.status_code == 200 and again.json()["id"] == second.json()["id"]


def test_conditional_update_with_several_matches_is_412(client):
    for _ in range(2):
        client.post("/fhir/Patient", json=patient(identifier=[IDENT]))
    r = client.put(f"/fhir/Patient?{CRITERIA}", json=patient(identifier=[IDENT]))
    assert r.status_code == 412
    assert r.json()["issue"][0]["code"] == "multiple-matches"


def test_conditional_update_with_mismatching_body_id_is_400(client):
    client.post("/fhir/Patient", json=patient(identifier=[IDENT]))
    assert client.put(f"/fhir/Patient?{CRITERIA}", json=patient(id="other", identifier=[IDENT])).status_code == 400


def test_conditional_delete_removes_every_match(client):
    for _ in range(3):
        client.post("/fhir/Patient", json=patient(identifier=[IDENT]))
    keep = client.post("/fhir/Patient", json=patient()).json()["id"]
    assert client.delete(f"/fhir/Patient?{CRITERIA}").status_code == 204
    assert client.get("/fhir/Patient", params={"identifier": f"{IDENT['system']}|{IDENT['value']}"}).json()["total"] == 0
    assert client.get(f"/fhir/Patient/{keep}").status_code == 200


def test_conditional_create_after_the_match_was_deleted_creates_again(client):
    first = client.post("/fhir/Patient", json=patient(identifier=[IDENT]), headers={"If-None-Exist": CRITERIA})
    client.delete(f"/fhir/Patient/{first.json()['id']}")
    again = client.post("/fhir/Patient", json=patient(identifier=[IDENT]), headers={"If-None-Exist": CRITERIA})
    assert again.status_code == 201 and again.json()["id"] != first.json()["id"]
