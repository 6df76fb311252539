"""Content negotiation, malformed input and unknown routes: always an OperationOutcome, never a 500."""
from __future__ import annotations

import pytest


def outcome(r) -> dict:
    body = r.json()
    assert body["resourceType"] == "OperationOutcome", body
    return body


def test_xml_accept_is_406(client):
    r = client.get("/fhir/metadata", headers={"Accept": "application/fhir+xml"})
    assert r.status_code == 406
    outcome(r)


def test_format_xml_is_406_and_format_json_is_served(client):
    assert client.get("/fhir/metadata?_format=xml").status_code == 406
    r = client.get("/fhir/metadata?_format=json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+json")


def test_application_json_accept_is_answered_as_application_json(client):
    r = client.get("/fhir/metadata", headers={"Accept": "application/json"})
    assert r.headers["content-type"].startswith("application/json")


def test_pretty_output_is_indented(client):
    assert b"\n  " in client.get("/fhir/metadata?_pretty=true").content


def test_xml_body_is_415(client):
    r = client.post("/fhir/Patient", content=b"<Patient xmlns='http://hl7.org/fhir'/>",
                    headers={"Content-Type": "application/fhir+xml"})
    assert r.status_code == 415
    assert outcome(r)["issue"][0]["expression"] == ["Patient"]


@pytest.mark.parametrize("body", [b"{", b"[]", b"null", b"not json", b'{"resourceType":"Patient",}',
                                  b'{"resourceType":"Patient","gender":"male","gender":"female"}',
                                  b"\xff\xfe", b"", b"   ", b"[" * 100000])
def test_malformed_bodies_are_400_operation_outcomes(client, body):
    """Refused as a whole, the body has no element to point at: the issue names the resource it should
    have been."""
    r = client.post("/fhir/Patient", content=body, headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 400, r.text
    assert outcome(r)["issue"][0]["expression"] == ["Patient"]


@pytest.mark.parametrize(("method", "path", "root"), [
    ("POST", "/fhir", "Bundle"), ("PUT", "/fhir/Observation/o1", "Observation"),
    ("PATCH", "/fhir/Observation/o1", "Observation"), ("POST", "/fhir/Observation/o1/$meta-add", "Parameters"),
    ("POST", "/fhir/Patient/$validate", "Patient"), ("POST", "/fhir/PlanDefinition/ipt-standard-individual/$apply",
                                                     "Parameters")])
def test_an_unparsable_body_names_the_resource_its_endpoint_takes(client, method, path, root):
    r = client.request(method, path, content=b"{", headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 400, r.text
    assert outcome(r)["issue"][0]["expression"] == [root]


def test_oversize_body_is_413(client, app):
    app.state.settings.max_body_bytes = 1000
    r = client.post("/fhir/Patient", content=b'{"resourceType":"Patient","id":"' + b"x" * 2000 + b'"}',
                    headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 413
    outcome(r)


def test_unknown_route_is_404_operation_outcome(client):
    r = client.get("/fhir/Patient/1/foo/bar/baz")
    assert r.status_code == 404
    outcome(r)


def test_method_not_allowed_is_405_operation_outcome(client):
    r = client.put("/fhir/Patient/1/_history/1", json={})
    assert r.status_code == 405
    outcome(r)
    assert r.headers["allow"] == "GET, HEAD"


def test_405_allows_every_method_the_path_serves(client):
    """RFC 9110 15.5.6: Allow lists what the target supports, from all the routes sharing its path."""
    assert client.post("/fhir/Patient/p1", json={}).headers["allow"] == "GET, HEAD, PUT, PATCH, DELETE"
    assert client.request("OPTIONS", "/fhir/Patient").headers["allow"] == "GET, HEAD, POST, PUT, PATCH, DELETE"
    assert client.delete("/fhir").headers["allow"] == "GET, HEAD, POST"


def test_nothing_half_written_when_a_write_fails(client):
    before = client.get("/fhir/_history").json()["total"]
    client.post("/fhir/Patient", json={"resourceType": "Patient", "birthDate": "not-a-date"})
    assert client.get("/fhir/_history").json()["total"] == before


def test_invalid_resource_is_400_with_expression(client):
    r = client.post("/fhir/Patient", json={"resourceType": "Patient", "active": "true"})
    assert r.status_code == 400
    issues = outcome(r)["issue"]
    assert any("Patient.active" in i.get("expression", []) for i in issues)


def test_metadata_is_a_capability_statement_for_401(client):
    cs = client.get("/fhir/metadata").json()
    assert cs["resourceType"] == "CapabilityStatement"
    assert cs["fhirVersion"] == "4.0.1" and cs["kind"] == "instance"
    assert "json" in cs["format"]
    types = {r["type"]: r for r in cs["rest"][0]["resource"]}
    assert {"CarePlan", "Goal", "Encounter", "Patient"} <= set(types)
    assert types["Patient"]["conditionalDelete"] == "multiple"
    # reads answer If-None-Match and If-Modified-Since with 304 (test_crud), so both are declared
    assert types["Patient"]["conditionalRead"] == "full-support"
    docs = {p["name"]: p["documentation"] for p in types["PlanDefinition"]["searchParam"]}
    assert docs["depends-on"] == ("reference on relatedArtifact.where(type='depends-on').resource | library "
                                  "(targets: any of 145 resource types; chainable)")  # whole, not cut off
    phonetic = {p["name"]: p["documentation"] for p in types["Patient"]["searchParam"]}["phonetic"]
    assert "no phonetic algorithm" in phonetic  # R4 leaves it to the server: there is none (README)
    assert {i["code"] for i in types["CarePlan"]["interaction"]} >= {"read", "vread", "create", "update",
                                                                       "patch", "delete", "history-instance"}


def test_declared_oversize_body_is_refused_before_it_is_read(settings, database):
    from fastapi.testclient import TestClient

    from ipt_fhir.app import create_app

    settings.max_body_bytes = 500
    with TestClient(create_app(settings, database)) as small:
        r = small.post("/fhir/Patient", content=b'{"resourceType":"Patient","id":"' + b"x" * 600 + b'"}',
                       headers={"Content-Type": "application/fhir+json"})
        assert r.status_code == 413
        assert r.json()["issue"][0]["code"] == "too-long"
        assert r.json()["issue"][0]["expression"] == ["Patient"]

        def chunks():
            yield b'{"resourceType":"Patient",'
            yield b'"text":{"status":"generated","div":"' + b"y" * 600 + b'"}}'

        chunked = small.post("/fhir/Patient", content=chunks(), headers={"Content-Type": "application/fhir+json"})
        assert chunked.status_code == 413
        assert chunked.json()["issue"][0]["expression"] == ["Patient"]


def test_preferences_sent_in_several_prefer_headers_all_count(client):
    """RFC 7240 section 2: a client may send its preferences in more than one Prefer header."""
    strict = client.get("/fhir/Patient", params={"bogus": "1"},
                        headers=[("Prefer", "return=representation"), ("Prefer", "handling=strict")])
    assert strict.status_code == 400
    minimal = client.post("/fhir/Patient", json={"resourceType": "Patient"},
                          headers=[("Prefer", "handling=lenient"), ("Prefer", "return=minimal")])
    assert minimal.status_code == 201 and minimal.content == b""


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_writing_to_metadata_is_405_with_allow(client, method):
    r = client.request(method, "/fhir/metadata", json={"resourceType": "CapabilityStatement"})
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"
    assert r.json()["resourceType"] == "OperationOutcome"


def test_metadata_takes_mode_and_the_subsetting_parameters(client):
    """http.html#capabilities: mode=full|normative|terminology; _elements and _summary apply to every
    interaction that returns a resource."""
    full = client.get("/fhir/metadata").json()
    assert client.get("/fhir/metadata?mode=full").json() == full
    assert client.get("/fhir/metadata?mode=normative").json() == full  # all of an R4 CapabilityStatement is
    assert client.get("/fhir/metadata?mode=terminology").json()["resourceType"] == "TerminologyCapabilities"
    for query in ("mode=everything", "mode=full&mode=terminology"):
        r = client.get(f"/fhir/metadata?{query}")
        assert r.status_code == 400 and r.json()["issue"][0]["code"] == "invalid"
        assert r.json()["issue"][0]["expression"] == ["mode"]
    subset = client.get("/fhir/metadata?_elements=fhirVersion").json()
    assert subset["fhirVersion"] == "4.0.1" and "rest" not in subset
    assert subset["meta"]["tag"][0]["code"] == "SUBSETTED"
    assert client.get("/fhir/metadata?_summary=maybe").status_code == 400


def test_metadata_has_an_etag_that_follows_its_content_and_answers_if_none_match(client):
    """http.html#capabilities: "An ETag header SHOULD be returned with the Response. The value of the ETag
    header SHALL change if the returned resource changes."""
    full = client.get("/fhir/metadata")
    etag = full.headers["etag"]
    assert etag.startswith('W/"') and client.get("/fhir/metadata").headers["etag"] == etag
    assert client.head("/fhir/metadata").headers["etag"] == etag
    assert client.get("/fhir/metadata?mode=terminology").headers["etag"] != etag
    assert client.get("/fhir/metadata?_elements=fhirVersion").headers["etag"] != etag
    cached = client.get("/fhir/metadata", headers={"If-None-Match": f'W/"other", {etag}'})
    assert cached.status_code == 304 and cached.headers["etag"] == etag and cached.content == b""
    assert client.get("/fhir/metadata", headers={"If-None-Match": 'W/"other"'}).status_code == 200


@pytest.mark.parametrize("method, path, allow", [
    ("OPTIONS", "/fhir/metadata", "GET, HEAD"),
    ("OPTIONS", "/fhir/AuditEvent", "GET, HEAD"),
    ("POST", "/fhir/AuditEvent/x", "GET, HEAD"),
    ("OPTIONS", "/fhir/StructureDefinition/ipt-careplan", "GET, HEAD"),
    ("POST", "/fhir/Patient/x", "GET, HEAD, PUT, PATCH, DELETE"),
    ("OPTIONS", "/fhir/Patient", "GET, HEAD, POST, PUT, PATCH, DELETE"),
])
def test_a_405_allows_only_the_methods_the_path_really_serves(client, method, path, allow):
    """RFC 9110 15.5.6: Allow lists the target's supported methods; a route that only ever answers 405
    (writes to /metadata, AuditEvent, the server's own conformance resources) supports none."""
    r = client.request(method, path)
    assert r.status_code == 405
    assert r.headers["allow"] == allow


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "POST", "PUT", "DELETE"])
@pytest.mark.parametrize("path", ["/fhir/patient", "/fhir/patient/1", "/fhir/Foo/1/_history/1"])
def test_a_path_naming_no_resource_type_is_404_whatever_the_method(client, method, path):
    """A lowercase type is a common slip: it must read "not an R4 resource type", never a 405 whose Allow
    sends the client to methods that all answer 404."""
    r = client.request(method, path, headers={"Content-Type": "application/fhir+json"}, content=b"{}")
    assert r.status_code == 404, (method, r.status_code, r.text)
    assert "allow" not in r.headers
    if method != "HEAD":
        assert "is not an R4 resource type" in r.json()["issue"][0]["diagnostics"]
