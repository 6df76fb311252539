"""Errors of batch and transaction entries: every issue.expression is FHIRPath that selects the element
of the submitted Bundle the error is about; a batch entry that names another entry's placeholder is
told that batch entries cannot reference each other."""
from __future__ import annotations

import base64

import fhirpathpy
import pytest
from fhirpathpy.models import models

from tests.transactions.conftest import post_bundle, table_counts
from tests.transactions.test_transaction import patient, post, put, tx

PATIENT = "urn:uuid:7e1b3a52-2222-4c4e-9b0a-000000000001"
UNKNOWN = "urn:uuid:7e1b3a52-2222-4c4e-9b0a-0000000000ff"


def observation(**extra) -> dict:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, **extra}


def delete(url: str) -> dict:
    return {"request": {"method": "DELETE", "url": url}}


def expressions(outcome: dict) -> list[str]:
    return [e for issue in outcome["issue"] for e in issue.get("expression", [])]


def assert_points_into(bundle: dict, outcome: dict, expected: str) -> None:
    found = expressions(outcome)
    assert found == [expected], outcome
    assert fhirpathpy.evaluate(bundle, expected, {}, models["r4"]), f"{expected} selects nothing"


def test_a_batch_entry_that_names_another_entrys_placeholder_is_told_why(client):
    bundle = tx(post(patient(), PATIENT), post(observation(subject={"reference": PATIENT})), kind="batch")
    r = post_bundle(client, bundle)
    assert r.status_code == 200, r.text
    first, second = r.json()["entry"]
    assert first["response"]["status"] == "201 Created"
    assert second["response"]["status"] == "400"
    outcome = second["response"]["outcome"]
    assert "entry 0 of this batch" in outcome["issue"][0]["diagnostics"]
    assert "cannot reference" in outcome["issue"][0]["diagnostics"]
    assert_points_into(bundle, outcome, "Bundle.entry[1].resource.subject.reference")
    assert client.get("/fhir/Observation?_summary=count").json()["total"] == 0


def test_a_batch_entry_naming_no_fullurl_of_the_bundle_is_still_not_found(client):
    bundle = tx(post(patient(), PATIENT), post(observation(subject={"reference": UNKNOWN})), kind="batch")
    r = post_bundle(client, bundle)
    outcome = r.json()["entry"][1]["response"]["outcome"]
    assert r.json()["entry"][1]["response"]["status"] == "404"
    assert "names no fullUrl in this Bundle" in outcome["issue"][0]["diagnostics"]
    assert_points_into(bundle, outcome, "Bundle.entry[1].resource.subject.reference")


def test_a_batch_entry_with_a_conditional_reference_is_refused_as_a_create_of_its_own_is(client):
    """http.html#trules: conditional references are resolved "in a transaction (and only in a
    transaction)"; the same entry in a transaction resolves."""
    known = client.post("/fhir/Patient", json={**patient(), "identifier": [{"system": "urn:mrn", "value": "77"}]}).json()
    entry = observation(subject={"reference": "Patient?identifier=urn:mrn|77"})
    bundle = tx(post(entry), kind="batch")
    [answer] = post_bundle(client, bundle).json()["entry"]
    assert answer["response"]["status"] == "400"
    outcome = answer["response"]["outcome"]
    assert "only a transaction resolves" in outcome["issue"][0]["diagnostics"]
    assert_points_into(bundle, outcome, "Bundle.entry[0].resource.subject.reference")
    assert client.post("/fhir/Observation", json=entry).status_code == 400  # as on its own
    assert client.get("/fhir/Observation?_summary=count").json()["total"] == 0
    [created] = post_bundle(client, tx(post(entry))).json()["entry"]
    assert created["response"]["status"] == "201 Created", created
    location = created["response"]["location"]
    stored = client.get(f"/fhir/{location[location.index('Observation/'):]}").json()
    assert stored["subject"]["reference"] == f"Patient/{known['id']}"


def test_a_batch_patch_that_adds_a_conditional_reference_is_refused_too(client):
    """The patched resource, not only an entry's own, keeps a conditional reference as sent in a batch
    (the writer does not resolve it there), so the patch result is refused as on its own."""
    import base64
    import json

    client.post("/fhir/Patient", json={**patient(), "identifier": [{"system": "urn:mrn", "value": "78"}]})
    obs = client.post("/fhir/Observation", json=observation()).json()
    patch = [{"op": "add", "path": "/subject", "value": {"reference": "Patient?identifier=urn:mrn|78"}}]
    binary = {"resourceType": "Binary", "contentType": "application/json-patch+json",
              "data": base64.b64encode(json.dumps(patch).encode()).decode()}
    entry = {"resource": binary, "request": {"method": "PATCH", "url": f"Observation/{obs['id']}"}}
    [answer] = post_bundle(client, tx(entry, kind="batch")).json()["entry"]
    assert answer["response"]["status"] == "422", answer  # a patch whose result is invalid
    assert "only a transaction resolves" in answer["response"]["outcome"]["issue"][0]["diagnostics"]
    assert "subject" not in client.get(f"/fhir/Observation/{obs['id']}").json()


@pytest.mark.parametrize("resource,expected", [
    (observation(subject={"reference": UNKNOWN}), "Bundle.entry[1].resource.subject.reference"),
    (observation(subject={"reference": "Patient?identifier=urn:none|0"}), "Bundle.entry[1].resource.subject.reference"),
    (observation(subject={"reference": "Patient?bogus=1"}), "Bundle.entry[1].resource.subject.reference"),
    (observation(performer=[{"reference": "Practitioner/p"}, {"reference": UNKNOWN}]),
     "Bundle.entry[1].resource.performer[1].reference"),
    (observation(extension=[{"url": "http://example.org/a", "valueReference": {"reference": UNKNOWN}}]),
     "Bundle.entry[1].resource.extension[0].value.ofType(Reference).reference"),
    (observation(subject={"reference": "#p"}, contained=[
        {"resourceType": "Patient", "id": "p", "generalPractitioner": [{"reference": UNKNOWN}]}]),
     "Bundle.entry[1].resource.contained[0].generalPractitioner[0].reference"),
])
def test_an_unresolvable_reference_is_named_by_its_path(client, resource, expected):
    bundle = tx(post(patient(), PATIENT), post(resource))
    r = post_bundle(client, bundle)
    assert 400 <= r.status_code < 500, r.text
    assert_points_into(bundle, r.json(), expected)


def test_request_errors_point_at_the_request_element_at_fault(client):
    for entry, expected in [
        (post(patient(), ifNoneExist="bogus=1"), "Bundle.entry[0].request.ifNoneExist"),
        (put(patient(), "Patient?bogus=1"), "Bundle.entry[0].request.url"),
        (delete("Patient?bogus=1"), "Bundle.entry[0].request.url"),
        ({"request": {"method": "GET", "url": "Patient?birthdate=not-a-date"}}, "Bundle.entry[0].request.url"),
        (put(patient(id="im1"), ifMatch="version one"), "Bundle.entry[0].request.ifMatch"),
    ]:
        bundle = tx(entry)
        r = post_bundle(client, bundle)
        assert r.status_code == 400, r.text
        assert_points_into(bundle, r.json(), expected)


def test_ambiguous_or_missing_matches_point_at_the_criteria(client):
    for _ in range(2):
        client.post("/fhir/Patient", json=patient(identifier=[{"system": "urn:twice", "value": "1"}]))
    patch = {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "add"}, {"name": "path", "valueString": "Patient"},
        {"name": "name", "valueString": "active"}, {"name": "value", "valueBoolean": True}]}]}
    for entry, status, expected in [
        (post(patient(), ifNoneExist="identifier=urn:twice|1"), 412, "Bundle.entry[0].request.ifNoneExist"),
        (put(patient(), "Patient?identifier=urn:twice|1"), 412, "Bundle.entry[0].request.url"),
        ({"resource": patch, "request": {"method": "PATCH", "url": "Patient?identifier=urn:none|1"}}, 404,
         "Bundle.entry[0].request.url"),
        ({"resource": patch, "request": {"method": "PATCH", "url": "Patient/nobody"}}, 404,
         "Bundle.entry[0].request.url"),
    ]:
        bundle = tx(entry)
        r = post_bundle(client, bundle)
        assert r.status_code == status, r.text
        assert_points_into(bundle, r.json(), expected)


@pytest.mark.parametrize("kind", ["transaction", "batch"])
def test_a_patch_whose_result_is_refused_points_at_the_entry_not_into_its_patch(client, kind):
    """A PATCH entry holds its patch (Parameters, or a Binary of JSON Patch), not the Patient it produces:
    an error about Patient.gender names no element of the Bundle below the entry, so the entry is named."""
    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    fhirpath_patch = {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "add"}, {"name": "path", "valueString": "Patient"},
        {"name": "name", "valueString": "gender"}, {"name": "value", "valueCode": "not-a-gender"}]}]}
    json_patch = {"resourceType": "Binary", "contentType": "application/json-patch+json",
                  "data": base64.b64encode(b'[{"op": "add", "path": "/gender", "value": "not-a-gender"}]').decode()}
    for held in (fhirpath_patch, json_patch):
        bundle = tx({"resource": held, "request": {"method": "PATCH", "url": f"Patient/{pid}"}}, kind=kind)
        r = post_bundle(client, bundle)
        outcome = r.json() if kind == "transaction" else r.json()["entry"][0]["response"]["outcome"]
        status = r.status_code if kind == "transaction" else int(r.json()["entry"][0]["response"]["status"][:3])
        assert status == 422, r.text  # http.html#patch: a valid patch whose result is not a valid resource
        assert "gender" in outcome["issue"][0]["diagnostics"]
        assert_points_into(bundle, outcome, "Bundle.entry[0]")
    assert "gender" not in client.get(f"/fhir/Patient/{pid}").json()


def test_batch_entry_errors_point_into_the_bundle_as_a_transactions_do(client):
    bundle = tx({"resource": {"resourceType": "Observation"}, "request": {"method": "POST", "url": "Patient"}},
                post(patient(gender="not-a-gender")),
                {"request": {"method": "GET", "url": "Patient/nobody"}},
                kind="batch")
    r = post_bundle(client, bundle)
    assert r.status_code == 200, r.text
    outcomes = [e["response"]["outcome"] for e in r.json()["entry"]]
    assert_points_into(bundle, outcomes[0], "Bundle.entry[0].resource.resourceType")
    assert_points_into(bundle, outcomes[1], "Bundle.entry[1].resource.gender")
    assert_points_into(bundle, outcomes[2], "Bundle.entry[2].request.url")


def test_the_bundles_own_elements_are_validated_and_an_unknown_one_writes_nothing(client, database):
    """The Bundle around the entries is FHIR too: an unknown element, a wrong type or a method outside
    http-verb there is a 400 at its path, as in a resource; in a transaction nothing is written."""

    before = table_counts(database)
    for entry, expected in [
        ({**post(patient()), "bogus": 1}, "Bundle.entry[0].bogus"),
        ({**post(patient()), "fullUrl": 7}, "Bundle.entry[0].fullUrl"),
        ({"request": {"method": "FETCH", "url": "Patient"}}, "Bundle.entry[0].request.method"),
        ({**post(patient()), "request": {"method": "POST", "url": "Patient", "colour": "red"}},
         "Bundle.entry[0].request.colour"),
    ]:
        bundle = tx(entry)
        r = post_bundle(client, bundle)
        assert r.status_code == 400, r.text
        assert expected in expressions(r.json()), r.text
    unknown_at_top = {**tx(post(patient())), "colour": "red"}
    r = post_bundle(client, unknown_at_top)
    assert r.status_code == 400 and expressions(r.json()) == ["Bundle.colour"]
    r = post_bundle(client, {**tx(), "entry": []})  # FHIR JSON has no empty arrays
    assert r.status_code == 400 and expressions(r.json()) == ["Bundle.entry"]
    assert table_counts(database) == before


@pytest.mark.parametrize("bad_entry, expected", [
    ({**post(patient()), "bogus": 1}, "Bundle.entry[0].bogus"),
    ({**post(patient()), "fullUrl": "Patient/a/_history/2"}, "Bundle.entry[0].fullUrl"),  # bdl-8
])
def test_in_a_batch_an_entry_with_an_envelope_error_fails_alone(client, bad_entry, expected):
    r = post_bundle(client, tx(bad_entry, post(patient()), kind="batch"))
    assert r.status_code == 200, r.text
    bad, good = r.json()["entry"]
    assert bad["response"]["status"] == "400"
    assert expressions(bad["response"]["outcome"]) == [expected]
    assert good["response"]["status"] == "201 Created"


def test_the_bundle_invariants_of_a_transaction_are_enforced_and_nothing_is_written(client, database):
    """bundle.html#invariants: bdl-8 no versioned fullUrl, bdl-2 entry.search only in a searchset, bdl-4
    entry.response only in a response or history, bdl-7 each fullUrl once, bdl-1 total only in a
    searchset or history; and Bundle.entry.fullUrl: a RESTful fullUrl agrees with Resource.id."""

    before = table_counts(database)
    versioned = {**post(patient()), "fullUrl": "http://example.org/fhir/Patient/a/_history/1"}
    searched = {**post(patient()), "search": {"mode": "match"}}
    answered = {**post(patient()), "response": {"status": "201"}}
    first = {**post(patient()), "fullUrl": PATIENT}
    disagreeing = {**put(patient(id="bbb")), "fullUrl": "http://example.org/fhir/Patient/aaa"}
    for bundle, expected, code, rule in [
        (tx(versioned), "Bundle.entry[0].fullUrl", "invariant", "bdl-8"),
        (tx(post(patient()), searched), "Bundle.entry[1].search", "invariant", "bdl-2"),
        (tx(answered), "Bundle.entry[0].response", "invariant", "bdl-4"),
        (tx(first, post(patient()), first), "Bundle.entry[2].fullUrl", "invariant", "bdl-7"),
        ({**tx(post(patient())), "total": 1}, "Bundle.total", "invariant", "bdl-1"),
        (tx(disagreeing), "Bundle.entry[0].fullUrl", "invalid", "consistent with Resource.id"),
    ]:
        r = post_bundle(client, bundle)
        assert r.status_code == 400, r.text
        issue = next(i for i in r.json()["issue"] if expected in i.get("expression", []))
        assert issue["code"] == code and rule in issue["diagnostics"]
        assert_points_into(bundle, r.json(), expected)
    assert table_counts(database) == before


def test_the_same_fullurl_twice_is_allowed_for_different_versions(client):
    """bdl-7 lets entries share a fullUrl when their meta.versionId differs."""
    url = "http://example.org/fhir/Patient/same"
    one = {**put(patient(id="same", meta={"versionId": "1"}), "Patient/same"), "fullUrl": url}
    other = {**post(patient(meta={"versionId": "2"})), "fullUrl": url}
    r = post_bundle(client, tx(one, other, kind="batch"))
    assert [e["response"]["status"] for e in r.json()["entry"]] == ["201 Created", "201 Created"], r.text


def test_a_transaction_cannot_write_two_entries_under_one_fullurl_even_of_different_versions(client, database):
    """bdl-7 allows the pair (above), but in a transaction references to the fullUrl would resolve to
    either of two written resources: refused, nothing written."""
    before = table_counts(database)
    url = "http://example.org/fhir/Patient/same"
    one = {**put(patient(id="same", meta={"versionId": "1"}), "Patient/same"), "fullUrl": url}
    other = {**post(patient(meta={"versionId": "2"})), "fullUrl": url}
    bundle = tx(one, other)
    r = post_bundle(client, bundle)
    assert r.status_code == 400, r.text
    assert expressions(r.json()) == ["Bundle.entry[1].fullUrl"]
    assert "also used by entry 0" in r.json()["issue"][0]["diagnostics"]
    assert_points_into(bundle, r.json(), "Bundle.entry[1].fullUrl")
    assert table_counts(database) == before


def test_an_entry_addressed_to_another_server_is_refused_and_changes_nothing(client):
    """request.url is relative to this server's base (bundle.html): another server's Patient/p is not ours."""
    assert client.put("/fhir/Patient/p", json={"resourceType": "Patient", "id": "p"},
                      headers={"Content-Type": "application/fhir+json"}).status_code == 201
    elsewhere = "http://other.example.org/fhir/Patient/p"
    bundle = tx(delete(elsewhere))
    r = post_bundle(client, bundle)
    assert r.status_code == 400, r.text
    assert_points_into(bundle, r.json(), "Bundle.entry[0].request.url")
    assert "not on this server" in r.json()["issue"][0]["diagnostics"]
    assert client.get("/fhir/Patient/p").status_code == 200

    batch = tx(delete(elsewhere), put(patient(id="q"), "https://other.example.org/R4/Patient/q"),
               {"request": {"method": "GET", "url": "http://testserver/fhir/Patient/p"}},
               {"request": {"method": "GET", "url": "http://testserver/fhir?_type=Patient"}}, kind="batch")
    r = post_bundle(client, batch)
    assert r.status_code == 200, r.text
    assert [e["response"]["status"][:3] for e in r.json()["entry"]] == ["400", "400", "200", "200"]
    assert client.get("/fhir/Patient/p").status_code == 200
    assert client.get("/fhir/Patient/q").status_code == 404


@pytest.mark.parametrize("entry", [
    delete("AuditEvent/missing"),
    delete("AuditEvent?_id=missing"),
    post({"resourceType": "AuditEvent"}),  # invalid too: the 405 comes first, as over REST
    put({"resourceType": "AuditEvent", "id": "a"}),
])
def test_audit_event_writes_in_a_bundle_get_the_405_of_the_rest_call(client, entry):
    r = post_bundle(client, tx(entry, kind="batch"))
    assert r.status_code == 200, r.text
    response = r.json()["entry"][0]["response"]
    assert response["status"].startswith("405"), response
    assert expressions(response["outcome"]) == ["Bundle.entry[0].request.method"]
    r = post_bundle(client, tx(entry))
    assert r.status_code == 405, r.text


def test_post_search_entries_run_the_search_of_their_url(client):
    """POST [type]/_search is the search interaction; in a Bundle its criteria are request.url's."""
    pid = client.post("/fhir/Patient", json=patient(identifier=[{"system": "http://x", "value": "s1"}]),
                      headers={"Content-Type": "application/fhir+json"}).json()["id"]
    client.post("/fhir/Patient", json=patient(), headers={"Content-Type": "application/fhir+json"})
    searches = [{"request": {"method": "POST", "url": "Patient/_search?identifier=http://x|s1"}},
                {"request": {"method": "POST", "url": f"_search?_id={pid}&_type=Patient"}},
                {"request": {"method": "POST", "url": "Patient/_search"}, "resource": patient()}]
    r = post_bundle(client, tx(*searches, kind="batch"))
    assert r.status_code == 200, r.text
    by_type, system, with_body = r.json()["entry"]
    for found in (by_type, system):
        assert found["response"]["status"] == "200 OK"
        assert found["resource"]["type"] == "searchset"
        assert [e["resource"]["id"] for e in found["resource"]["entry"]] == [pid]
    assert with_body["response"]["status"].startswith("400")
    assert expressions(with_body["response"]["outcome"]) == ["Bundle.entry[2].resource"]


def test_an_unexpected_failure_of_one_batch_entry_is_that_entrys_500(client, monkeypatch, caplog):
    """A defect met by one entry rolls back that entry's unit only: the others are reported as done, not
    hidden behind a 500 for the whole batch."""
    from ipt_fhir.services import bundle_processing

    real = bundle_processing.BundleService._batch_entry

    def failing(self, entry, *args, **kwargs):
        if entry.index == 1:
            raise RuntimeError("a defect")
        return real(self, entry, *args, **kwargs)

    monkeypatch.setattr(bundle_processing.BundleService, "_batch_entry", failing)
    r = post_bundle(client, tx(post(patient()), post(patient()), post(patient()), kind="batch"))
    assert r.status_code == 200, r.text
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    assert statuses[0] == statuses[2] == "201 Created" and statuses[1].startswith("500"), statuses
    outcome = r.json()["entry"][1]["response"]["outcome"]
    assert "not applied" in outcome["issue"][0]["diagnostics"] and "a defect" not in r.text
    assert any("batch entry 1 failed" in rec.getMessage() for rec in caplog.records)


@pytest.mark.parametrize("entry", [
    {"request": {"method": "DELETE", "url": "metadata"}},
    {"request": {"method": "PUT", "url": "Patient/_history"}},
    post({"resourceType": "AuditEvent"}),
])
def test_a_transaction_failed_by_an_entrys_405_carries_the_allow_of_its_own_url(client, entry):
    """RFC 9110 15.5.6: a 405 names in Allow the methods the target serves; the target is [base], where
    the entry's own Allow (its URL's methods) would mislead."""
    r = post_bundle(client, tx(entry))
    assert r.status_code == 405, r.text
    assert r.headers["Allow"] == "GET, HEAD, POST"
    assert client.options("/fhir").headers["Allow"] == "GET, HEAD, POST"  # what a 405 at [base] names too


@pytest.mark.parametrize("kind", ["transaction", "batch"])
def test_an_error_inside_a_stored_bundle_points_into_it_through_the_entry(client, kind):
    """The entry's resource is a Bundle too: its own paths start with Bundle.entry, and are still the
    entry's resource's, not the outer Bundle's entries."""
    inner = {"resourceType": "Bundle", "type": "collection",
             "entry": [{"fullUrl": "urn:uuid:0c5c1a41-0000-4000-8000-000000000001",
                        "resource": {"resourceType": "Patient", "gender": "bogus"}}]}
    bundle = {"resourceType": "Bundle", "type": kind, "entry": [
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": inner, "request": {"method": "POST", "url": "Bundle"}}]}
    r = client.post("/fhir", json=bundle)
    outcome = r.json() if kind == "transaction" else r.json()["entry"][1]["response"]["outcome"]
    assert expressions(outcome) == ["Bundle.entry[1].resource.entry[0].resource.gender"], r.text
