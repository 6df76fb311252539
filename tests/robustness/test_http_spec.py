"""A checklist of http://hl7.org/fhir/R4/http.html behaviour a conformance suite probes: status codes,
headers, conditional interactions, Bundle shapes and OperationOutcome structure."""
from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime

import pytest

from .conftest import assert_fhir_answer, history_rows

FHIR = {"Content-Type": "application/fhir+json"}
ETAG = re.compile(r'^W/"\d+"$')


def _patient(client, **extra):
    rid = f"spec-{uuid.uuid4().hex[:12]}"
    body = {"resourceType": "Patient", "id": rid, "name": [{"family": "Spec", "given": ["Ada"]}], "gender": "female",
            "identifier": [{"system": "http://spec.test/id", "value": rid}], **extra}
    r = client.put(f"/fhir/Patient/{rid}", json=body, headers=FHIR)
    assert r.status_code == 201, r.text
    return rid, r


# --- create / update ---------------------------------------------------------------------------------

def test_create_answers_201_with_location_etag_last_modified_and_server_assigned_meta(rclient):
    r = rclient.post("/fhir/Patient", json={"resourceType": "Patient", "id": "ignored-client-id"}, headers=FHIR)
    assert r.status_code == 201
    body = r.json()
    assert body["id"] != "ignored-client-id"
    assert r.headers["location"] == f"http://testserver/fhir/Patient/{body['id']}/_history/1"
    assert ETAG.match(r.headers["etag"]) and r.headers["etag"] == 'W/"1"'
    assert parsedate_to_datetime(r.headers["last-modified"]).tzinfo is not None
    assert body["meta"]["versionId"] == "1" and "lastUpdated" in body["meta"]
    assert r.headers["content-type"] == "application/fhir+json; charset=utf-8"


def test_update_as_create_is_201_and_update_is_200_with_next_version(rclient):
    rid, created = _patient(rclient)
    assert created.headers["etag"] == 'W/"1"'
    r = rclient.put(f"/fhir/Patient/{rid}", json={"resourceType": "Patient", "id": rid, "gender": "male"}, headers=FHIR)
    assert r.status_code == 200 and r.headers["etag"] == 'W/"2"'
    assert r.headers["location"].endswith(f"/Patient/{rid}/_history/2")


def test_if_match_stale_is_412_and_current_succeeds(rclient):
    rid, _ = _patient(rclient)
    stale = rclient.put(f"/fhir/Patient/{rid}", json={"resourceType": "Patient", "id": rid},
                        headers={**FHIR, "If-Match": 'W/"7"'})
    assert stale.status_code == 412
    assert_fhir_answer(stale)
    ok = rclient.put(f"/fhir/Patient/{rid}", json={"resourceType": "Patient", "id": rid},
                     headers={**FHIR, "If-Match": 'W/"1"'})
    assert ok.status_code == 200


@pytest.mark.parametrize("prefer,has_body,kind", [
    ("return=minimal", False, None), ("return=representation", True, "Patient"),
    ("return=OperationOutcome", True, "OperationOutcome")])
def test_prefer_return_on_create_and_update(rclient, prefer, has_body, kind):
    r = rclient.post("/fhir/Patient", json={"resourceType": "Patient"}, headers={**FHIR, "Prefer": prefer})
    assert r.status_code == 201 and "location" in r.headers and "etag" in r.headers
    assert bool(r.content) == has_body
    if kind:
        assert r.json()["resourceType"] == kind
    rid = r.headers["location"].split("/")[-3]
    u = rclient.put(f"/fhir/Patient/{rid}", json={"resourceType": "Patient", "id": rid}, headers={**FHIR, "Prefer": prefer})
    assert u.status_code == 200 and bool(u.content) == has_body


def test_if_none_exist_returns_200_with_the_match_and_writes_nothing(robust_app, rclient):
    rid, _ = _patient(rclient)
    before = history_rows(robust_app)
    r = rclient.post("/fhir/Patient", json={"resourceType": "Patient"},
                     headers={**FHIR, "If-None-Exist": f"identifier=http://spec.test/id|{rid}"})
    assert r.status_code == 200 and r.json()["id"] == rid
    assert history_rows(robust_app) == before


def test_conditional_update_with_several_matches_is_412(rclient):
    family = f"Twin{uuid.uuid4().hex[:8]}"
    for _ in range(2):
        rclient.post("/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": family}]}, headers=FHIR)
    r = rclient.put(f"/fhir/Patient?family={family}", json={"resourceType": "Patient"}, headers=FHIR)
    assert r.status_code == 412
    assert_fhir_answer(r)


# --- read, vread, conditional read ---------------------------------------------------------------------

def test_read_has_etag_and_last_modified_matching_meta(rclient):
    rid, _ = _patient(rclient)
    r = rclient.get(f"/fhir/Patient/{rid}")
    assert r.status_code == 200 and r.headers["etag"] == 'W/"1"'
    last_updated = datetime.fromisoformat(r.json()["meta"]["lastUpdated"].replace("Z", "+00:00"))
    assert parsedate_to_datetime(r.headers["last-modified"]) == last_updated.replace(microsecond=0)


@pytest.mark.parametrize("header", ['W/"1"', '"1"', 'W/"5", W/"1"', "*"])
def test_if_none_match_on_read_is_304_with_weak_comparison(rclient, header):
    rid, _ = _patient(rclient)
    r = rclient.get(f"/fhir/Patient/{rid}", headers={"If-None-Match": header})
    assert r.status_code == 304 and not r.content and r.headers["etag"] == 'W/"1"'
    assert rclient.get(f"/fhir/Patient/{rid}", headers={"If-None-Match": 'W/"2"'}).status_code == 200


def test_if_modified_since_on_read(rclient):
    rid, created = _patient(rclient)
    modified = parsedate_to_datetime(created.headers["last-modified"])
    later = format_datetime(modified + timedelta(hours=1), usegmt=True)
    earlier = format_datetime(modified - timedelta(hours=1), usegmt=True)
    assert rclient.get(f"/fhir/Patient/{rid}", headers={"If-Modified-Since": later}).status_code == 304
    assert rclient.get(f"/fhir/Patient/{rid}", headers={"If-Modified-Since": created.headers["last-modified"]}).status_code == 304
    assert rclient.get(f"/fhir/Patient/{rid}", headers={"If-Modified-Since": earlier}).status_code == 200
    assert rclient.get(f"/fhir/Patient/{rid}", headers={"If-Modified-Since": "not a date"}).status_code == 200


def test_head_read_has_the_headers_and_no_body(rclient):
    rid, _ = _patient(rclient)
    r = rclient.head(f"/fhir/Patient/{rid}")
    assert r.status_code == 200 and not r.content and r.headers["etag"] == 'W/"1"'


def test_unknown_is_404_deleted_is_410_and_unknown_version_is_404(rclient):
    rid, _ = _patient(rclient)
    assert rclient.get("/fhir/Patient/never-was-here").status_code == 404
    assert rclient.delete(f"/fhir/Patient/{rid}").status_code in (200, 204)
    gone = rclient.get(f"/fhir/Patient/{rid}")
    assert gone.status_code == 410
    assert_fhir_answer(gone)
    assert rclient.get(f"/fhir/Patient/{rid}/_history/1").status_code == 200
    assert rclient.get(f"/fhir/Patient/{rid}/_history/9").status_code == 404


def test_unknown_resource_type_is_404_and_unsupported_method_is_405(rclient):
    for r in (rclient.get("/fhir/NotAType/1"), rclient.get("/fhir/NotAType")):
        assert r.status_code == 404
        assert_fhir_answer(r)
    r = rclient.post("/fhir/Patient/example", json={"resourceType": "Patient"}, headers=FHIR)
    assert r.status_code == 405 and "allow" in {k.lower() for k in r.headers}
    assert_fhir_answer(r)


@pytest.mark.parametrize("params", ["_summary=true", "_elements=gender", "_summary=text"])
def test_summary_and_elements_apply_to_read_and_mark_subsetted(rclient, params):
    rid, _ = _patient(rclient, birthDate="1980-01-01")
    for url in (f"/fhir/Patient/{rid}?{params}", f"/fhir/Patient/{rid}/_history/1?{params}"):
        body = rclient.get(url).json()
        assert any(t.get("code") == "SUBSETTED" for t in body["meta"].get("tag", [])), body
        assert body["id"] == rid
        if params == "_elements=gender":
            assert body["gender"] == "female" and "name" not in body and "birthDate" not in body
    assert rclient.get(f"/fhir/Patient/{rid}?_summary=bogus").status_code == 400


# --- content negotiation ---------------------------------------------------------------------------------

@pytest.mark.parametrize("accept,status", [
    ("application/fhir+json", 200), ("application/fhir+json; fhirVersion=4.0", 200), ("*/*", 200),
    ("application/fhir+xml", 406), ("application/fhir+json; fhirVersion=3.0", 406)])
def test_accept_negotiation(rclient, accept, status):
    r = rclient.get("/fhir/metadata", headers={"Accept": accept})
    assert r.status_code == status
    if status == 406:
        assert_fhir_answer(r)


def test_format_and_pretty(rclient):
    assert rclient.get("/fhir/metadata?_format=json").status_code == 200
    assert rclient.get("/fhir/metadata?_format=application/fhir%2Bjson").status_code == 200
    assert rclient.get("/fhir/metadata?_format=xml").status_code == 406
    assert b"\n  " in rclient.get("/fhir/metadata?_pretty=true").content


def test_body_that_is_not_json_is_415(rclient):
    r = rclient.post("/fhir/Patient", content=b"<Patient/>", headers={"Content-Type": "application/fhir+xml"})
    assert r.status_code == 415
    assert_fhir_answer(r)


def test_capability_statement_says_json_and_4_0_1(rclient):
    cs = rclient.get("/fhir/metadata").json()
    assert cs["resourceType"] == "CapabilityStatement" and cs["fhirVersion"] == "4.0.1"
    assert "json" in cs["format"] or "application/fhir+json" in cs["format"]
    assert cs["kind"] == "instance" and cs["rest"][0]["mode"] == "server"


def test_capability_statement_is_a_valid_r4_resource(rclient):
    """Clients and test suites validate /metadata first; the server's own validator must accept it."""
    from ipt_fhir.fhir.validation import validate_resource

    cs = rclient.get("/fhir/metadata").json()
    errors = [i for i in validate_resource(cs, expected_type="CapabilityStatement") if i.is_error]
    assert errors == []
    assert cs["rest"][0]["compartment"] == ["http://hl7.org/fhir/CompartmentDefinition/patient"]


def test_metadata_mode_terminology_is_a_valid_terminology_capabilities(rclient):
    """http.html#capabilities: mode=terminology asks for the TerminologyCapabilities: the code systems
    this server checks codes of (R4's own and the IPT layer's, with their version), no operations."""
    from ipt_fhir.fhir.validation import validate_resource

    r = rclient.get("/fhir/metadata?mode=terminology")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+json")
    tc = r.json()
    errors = [i for i in validate_resource(tc, expected_type="TerminologyCapabilities") if i.is_error]
    assert errors == []
    assert tc["kind"] == "instance" and tc["implementation"]["url"].endswith("/fhir")
    systems = {cs["uri"]: cs.get("version") for cs in tc["codeSystem"]}
    assert "http://hl7.org/fhir/request-status" in systems  # CarePlan.status, a required binding
    assert systems["http://ipt-fhir.org/fhir/CodeSystem/ipt-phase"] == [{"code": "0.1.0", "isDefault": True}]
    assert "http://snomed.info/sct" not in systems  # only some of its codes are known here
    assert not {"expansion", "validateCode", "translation", "closure"} & set(tc)


# --- search and history Bundles ----------------------------------------------------------------------------

def test_searchset_bundle_shape(rclient):
    rid, _ = _patient(rclient)
    r = rclient.get(f"/fhir/Patient?_id={rid}")
    b = r.json()
    assert b["resourceType"] == "Bundle" and b["type"] == "searchset" and b["total"] == 1
    assert {link["relation"] for link in b["link"]} >= {"self"}
    entry = b["entry"][0]
    assert entry["fullUrl"] == f"http://testserver/fhir/Patient/{rid}"
    assert entry["search"]["mode"] == "match"
    count = rclient.get(f"/fhir/Patient?_id={rid}&_summary=count").json()
    assert count["total"] == 1 and "entry" not in count


def test_search_paging_links_reach_every_match_once(rclient):
    family = f"Page{uuid.uuid4().hex[:8]}"
    for _ in range(5):
        rclient.post("/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": family}]}, headers=FHIR)
    url, seen = f"/fhir/Patient?family={family}&_count=2", []
    while url:
        b = rclient.get(url).json()
        assert b["total"] == 5
        seen += [e["resource"]["id"] for e in b.get("entry", []) if e["search"]["mode"] == "match"]
        url = next((link["url"] for link in b["link"] if link["relation"] == "next"), None)
    assert len(seen) == 5 == len(set(seen))


def test_include_entries_are_marked_include(rclient):
    rid, _ = _patient(rclient)
    obs = rclient.post("/fhir/Observation", json={"resourceType": "Observation", "status": "final",
                                                   "code": {"text": "x"}, "subject": {"reference": f"Patient/{rid}"}},
                       headers=FHIR).json()
    b = rclient.get(f"/fhir/Observation?_id={obs['id']}&_include=Observation:subject").json()
    modes = {e["resource"]["resourceType"]: e["search"]["mode"] for e in b["entry"]}
    assert modes == {"Observation": "match", "Patient": "include"} and b["total"] == 1


def test_unknown_search_parameter_is_ignored_leniently_and_400_with_strict_handling(rclient):
    assert rclient.get("/fhir/Patient?not-a-param=1").status_code == 200
    r = rclient.get("/fhir/Patient?not-a-param=1", headers={"Prefer": "handling=strict"})
    assert r.status_code == 400
    assert_fhir_answer(r, expect_expression=True)


def test_history_bundle_shape_with_deletion(rclient):
    rid, _ = _patient(rclient)
    rclient.put(f"/fhir/Patient/{rid}", json={"resourceType": "Patient", "id": rid}, headers=FHIR)
    rclient.delete(f"/fhir/Patient/{rid}")
    b = rclient.get(f"/fhir/Patient/{rid}/_history").json()
    assert b["type"] == "history" and b["total"] == 3
    methods = [e["request"]["method"] for e in b["entry"]]
    assert methods == ["DELETE", "PUT", "PUT"]
    assert "resource" not in b["entry"][0]
    for e in b["entry"]:
        assert e["fullUrl"].endswith(f"/Patient/{rid}") and e["response"]["status"][:3].isdigit()
    assert [e["resource"]["meta"]["versionId"] for e in b["entry"][1:]] == ["2", "1"]


# --- delete ------------------------------------------------------------------------------------------------

def test_conditional_delete_and_delete_are_idempotent(robust_app, rclient):
    rid, _ = _patient(rclient)
    r = rclient.delete(f"/fhir/Patient?identifier=http://spec.test/id|{rid}")
    assert r.status_code in (200, 204)
    assert rclient.get(f"/fhir/Patient/{rid}").status_code == 410
    before = history_rows(robust_app)
    assert rclient.delete(f"/fhir/Patient/{rid}").status_code in (200, 204)
    assert history_rows(robust_app) == before


# --- transaction ---------------------------------------------------------------------------------------------

def test_transaction_response_shape_and_rollback(robust_app, rclient):
    ok = rclient.post("/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111",
         "resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                      "subject": {"reference": "urn:uuid:11111111-1111-4111-8111-111111111111"}},
         "request": {"method": "POST", "url": "Observation"}}]}, headers=FHIR)
    assert ok.status_code == 200
    b = ok.json()
    assert b["type"] == "transaction-response" and len(b["entry"]) == 2
    for e in b["entry"]:
        assert e["response"]["status"].startswith("201") and e["response"]["location"] and e["response"]["etag"]
    before = history_rows(robust_app)
    bad = rclient.post("/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Patient", "gender": "bogus"}, "request": {"method": "POST", "url": "Patient"}}]},
        headers=FHIR)
    assert 400 <= bad.status_code < 500
    assert_fhir_answer(bad, expect_expression=True)
    assert any("Bundle.entry[1]" in x for i in bad.json()["issue"] for x in i.get("expression", []))
    assert history_rows(robust_app) == before
