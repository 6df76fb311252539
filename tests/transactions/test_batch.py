"""Batch Bundles: every entry on its own, each with its own response and outcome."""
from __future__ import annotations

from tests.transactions.conftest import post_bundle
from tests.transactions.test_transaction import patient, post, put, tx


def test_a_failing_entry_rolls_back_only_itself(client):
    r = post_bundle(client, tx(
        post(patient()),
        post(patient(gender="not-a-gender")),
        {"resource": patient(id="b1"), "request": {"method": "PUT", "url": "Patient/b1", "ifMatch": 'W/"3"'}},
        put(patient(id="b2")),
        {"request": {"method": "GET", "url": "Patient/unknown"}},
        kind="batch"))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["type"] == "batch-response"
    statuses = [e["response"]["status"] for e in out["entry"]]
    assert statuses == ["201 Created", "400", "412", "201 Created", "404"]
    assert out["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert client.get("/fhir/Patient?_summary=count").json()["total"] == 2
    assert client.get("/fhir/Patient/b1").status_code == 404


def test_batch_reads_and_searches(client):
    client.put("/fhir/Patient/r1", json=patient(id="r1"))
    r = post_bundle(client, tx({"request": {"method": "GET", "url": "Patient/r1"}},
                               {"request": {"method": "GET", "url": "Patient?_id=r1"}}, kind="batch"))
    first, second = r.json()["entry"]
    assert first["resource"]["id"] == "r1" and first["response"]["etag"] == 'W/"1"'
    assert second["resource"]["total"] == 1


def test_batch_vread_of_an_unknown_version_says_which_version(client):
    client.put("/fhir/Patient/r2", json=patient(id="r2"))
    r = post_bundle(client, tx({"request": {"method": "GET", "url": "Patient/r2/_history/99"}},
                               {"request": {"method": "GET", "url": "Patient/r2/_history/01"}},
                               {"request": {"method": "GET", "url": "Patient/r2/_history/1"}}, kind="batch"))
    missing, leading_zero, found = r.json()["entry"]
    assert missing["response"]["status"].startswith("404")
    assert "version 99 of Patient/r2" in missing["response"]["outcome"]["issue"][0]["diagnostics"]
    assert leading_zero["response"]["status"].startswith("404")  # version ids are strings: "01" is not "1"
    assert found["resource"]["meta"]["versionId"] == "1"


def test_batch_compartment_and_system_searches(client):
    """Every search interaction is an entry (http.html#transaction): compartment and system searches too."""
    client.put("/fhir/Patient/r3", json=patient(id="r3"))
    client.put("/fhir/Patient/r4", json=patient(id="r4"))
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    client.post("/fhir/Observation", json=dict(obs, subject={"reference": "Patient/r3"}))
    client.post("/fhir/Observation", json=dict(obs, subject={"reference": "Patient/r4"}))
    urls = ["Patient/r3/Observation", "Patient/r3/*?_type=Observation,Patient", "?_type=Patient&_id=r3,r4",
            "Patient/r3/Observation?_count=0"]
    r = post_bundle(client, tx(*[{"request": {"method": "GET", "url": u}} for u in urls], kind="batch"))
    in_compartment, compartment_all, system, counted = [e["resource"] for e in r.json()["entry"]]
    assert in_compartment["total"] == 1
    assert in_compartment["entry"][0]["resource"]["subject"]["reference"] == "Patient/r3"
    assert "/Patient/r3/Observation" in in_compartment["link"][0]["url"]
    assert sorted(e["resource"]["resourceType"] for e in compartment_all["entry"]) == ["Observation", "Patient"]
    assert {e["resource"]["id"] for e in system["entry"]} == {"r3", "r4"}
    assert counted["total"] == 1 and "entry" not in counted
    # the same answers as their REST endpoints give
    for url, entry in zip(urls, (in_compartment, compartment_all, system)):
        rest = client.get(f"/fhir/{url}").json()
        assert rest["total"] == entry["total"]
        assert sorted(e["fullUrl"] for e in rest["entry"]) == sorted(e["fullUrl"] for e in entry["entry"])


def test_batch_searches_follow_the_requests_handling_preference(client):
    """Prefer: handling=strict on the batch makes an unknown search parameter its entry's 400; without it
    (lenient) the entry's searchset carries a warning and the parameter is left out (http.html#search)."""
    client.put("/fhir/Patient/h1", json=patient(id="h1"))
    bundle = tx({"request": {"method": "GET", "url": "Patient?_id=h1&no-such-param=x"}},
                {"request": {"method": "GET", "url": "Patient?_id=h1"}}, kind="batch")
    strict = post_bundle(client, bundle, Prefer="handling=strict").json()["entry"]
    assert strict[0]["response"]["status"].startswith("400")
    assert "no-such-param" in strict[0]["response"]["outcome"]["issue"][0]["diagnostics"]
    assert strict[1]["resource"]["total"] == 1
    lenient = post_bundle(client, bundle).json()["entry"]
    assert lenient[0]["response"]["status"] == "200 OK"
    searchset = lenient[0]["resource"]
    assert searchset["total"] == 1
    assert [e["search"]["mode"] for e in searchset["entry"]] == ["outcome", "match"]
    # a transaction's search entries too: the entry's 400 fails the whole transaction
    bundle["type"] = "transaction"
    assert post_bundle(client, bundle, Prefer="handling=strict").status_code == 400
    assert post_bundle(client, bundle).status_code == 200
    # preference values are read case-insensitively
    assert post_bundle(client, bundle, Prefer="handling=Strict").status_code == 400
