"""Patient/$everything at type level ([base]/Patient/$everything; OperationDefinition Patient-everything
has type=true): the compartments of every patient, and what they refer to, paged as one search."""
from __future__ import annotations

import json

import pytest

from ipt_fhir.security import context
from ipt_fhir.security.context import AccessContext
from ipt_fhir.security.scopes import ScopeSet


@pytest.fixture
def two_patients(client):
    for pid in ("p1", "p2"):
        assert client.put(f"/fhir/Patient/{pid}", json={"resourceType": "Patient", "id": pid}).status_code == 201
    assert client.put("/fhir/Practitioner/dr", json={"resourceType": "Practitioner", "id": "dr"}).status_code == 201
    for oid, subject in (("o1", "Patient/p1"), ("o2", "Patient/p2"), ("o3", "Patient/p2"), ("orphan", None),
                         ("elsewhere", "http://other.org/fhir/Patient/p1"), ("ghost", "Patient/nobody")):
        obs = {"resourceType": "Observation", "id": oid, "status": "final", "code": {"text": oid}}
        if subject:
            obs["subject"] = {"reference": subject}
        if oid == "o1":
            obs["performer"] = [{"reference": "Practitioner/dr"}]
        assert client.put(f"/fhir/Observation/{oid}", json=obs).status_code == 201
    return client


def _refs(bundle: dict) -> list[str]:
    return sorted(f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle.get("entry", []))


def test_type_level_everything_returns_every_patients_compartment_and_what_it_refers_to(two_patients):
    r = two_patients.get("/fhir/Patient/$everything")
    assert r.status_code == 200, r.text
    assert r.json()["type"] == "searchset"
    assert _refs(r.json()) == ["Observation/o1", "Observation/o2", "Observation/o3", "Patient/p1", "Patient/p2",
                               "Practitioner/dr"]


def test_type_level_everything_pages_without_duplicates(two_patients):
    seen, url = [], "/fhir/Patient/$everything?_count=2"
    while url:
        page = two_patients.get(url).json()
        assert len(page.get("entry", [])) <= 2
        seen += _refs(page)
        url = next((link["url"].replace("http://testserver", "") for link in page["link"]
                    if link["relation"] == "next"), None)
    assert sorted(seen) == _refs(two_patients.get("/fhir/Patient/$everything").json())
    assert len(seen) == len(set(seen)) == 6


def test_type_level_everything_honours_type_and_since(two_patients):
    assert _refs(two_patients.get("/fhir/Patient/$everything?_type=Patient").json()) == ["Patient/p1", "Patient/p2"]
    since = two_patients.get("/fhir/Observation/o3").json()["meta"]["lastUpdated"]
    later = two_patients.get("/fhir/Patient/$everything", params={"_since": since}).json()
    assert _refs(later) == ["Observation/o3"]
    for coarse in (since[:16], since[:19]):  # a minute, or a second without its zone, is no instant (as for $export)
        r = two_patients.get("/fhir/Patient/$everything", params={"_since": coarse})
        assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["_since"]


def test_type_level_everything_takes_post_with_parameters(two_patients):
    body = {"resourceType": "Parameters", "parameter": [{"name": "_type", "valueString": "Observation"}]}
    r = two_patients.post("/fhir/Patient/$everything", json=body, headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 200, r.text
    assert _refs(r.json()) == ["Observation/o1", "Observation/o2", "Observation/o3"]


def test_type_level_everything_leaves_out_deleted_patients_compartments(two_patients):
    assert two_patients.delete("/fhir/Patient/p2").status_code in (200, 204)
    assert _refs(two_patients.get("/fhir/Patient/$everything").json()) == [
        "Observation/o1", "Patient/p1", "Practitioner/dr"]


def test_type_level_everything_under_patient_scopes_is_the_tokens_patient_only(two_patients, app, database):
    from ipt_fhir.services import search

    restricted = AccessContext(unrestricted=False, subject="s", client_id="c", issuer="i", fhir_user=None,
                               patient="p2", scopes=ScopeSet(["patient/*.rs"]), sensitive=True, token_id=None)
    context.set_current(restricted)
    try:
        body = search.everything(database, None, [], base_url="http://testserver/fhir",
                                 request_url="http://testserver/fhir/Patient/$everything")
    finally:
        context.set_current(None)
    assert _refs(json.loads(body)) == ["Observation/o2", "Observation/o3", "Patient/p2"]
