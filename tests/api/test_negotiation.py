"""Content negotiation (http.html#mime-type, RFC 9110 12.5.1) and the resource types the server knows."""
from __future__ import annotations

import pytest

from ipt_fhir.fhir.resource_types import RESOURCE_TYPES


@pytest.mark.parametrize(("accept", "served"), [
    ("application/fhir+json;q=0, application/json", "application/json"),
    ("application/json;q=0.1, application/fhir+json;q=0.9", "application/fhir+json"),
    ("application/json, application/fhir+json", "application/json"),  # equal weights: the client's order
    ("*/*", "application/fhir+json"),
    ("application/*;q=0.5, application/json;q=0.2", "application/fhir+json"),
    ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "application/fhir+json"),
    ("application/json+fhir", "application/fhir+json"),
    ("text/plain", "application/fhir+json"),  # a client that names nothing we serve still gets JSON
])
def test_accept_weights_choose_the_answer(client, accept, served):
    r = client.get("/fhir/metadata", headers={"Accept": accept})
    assert r.status_code == 200
    assert r.headers["content-type"].split(";")[0] == served


@pytest.mark.parametrize("accept", [
    "application/fhir+json;q=0, application/json;q=0",
    "application/fhir+json;q=0, */*;q=0",
    "application/fhir+xml",
])
def test_accept_that_refuses_json_is_406(client, accept):
    r = client.get("/fhir/metadata", headers={"Accept": accept})
    assert r.status_code == 406
    assert r.json()["resourceType"] == "OperationOutcome"


def test_format_may_carry_the_fhir_version_parameter(client):
    ok = client.get("/fhir/metadata", params={"_format": "application/fhir+json;fhirVersion=4.0"})
    assert ok.status_code == 200 and ok.headers["content-type"].startswith("application/fhir+json")
    assert client.get("/fhir/metadata", params={"_format": "application/fhir+json; fhirVersion=3.0"}).status_code == 406


def test_only_r4_resource_types_are_known(client):
    assert "SubscriptionStatus" not in RESOURCE_TYPES  # R4B; the definitions source carries it too
    assert len(RESOURCE_TYPES) == 146
    types = {r["type"] for r in client.get("/fhir/metadata").json()["rest"][0]["resource"]}
    assert "SubscriptionStatus" not in types and {"Patient", "CarePlan", "Goal"} <= types
    r = client.post("/fhir/SubscriptionStatus", json={"resourceType": "SubscriptionStatus"})
    assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"


def test_a_body_of_another_fhir_version_is_415(client):
    """http.html#version-parameter: the fhirVersion parameter of Content-Type names the body's version."""
    body = {"resourceType": "Patient"}
    r = client.post("/fhir/Patient", json=body, headers={"Content-Type": "application/fhir+json; fhirVersion=5.0"})
    assert r.status_code == 415 and r.json()["resourceType"] == "OperationOutcome"
    ok = client.post("/fhir/Patient", json=body, headers={"Content-Type": "application/fhir+json; fhirVersion=4.0"})
    assert ok.status_code == 201


@pytest.mark.parametrize("content_type", [
    "application/fhir+json; charset=utf-16", 'application/fhir+json; charset="ISO-8859-1"',
    "application/json-patch+json; charset=latin1",
])
def test_a_body_in_a_charset_other_than_utf8_is_415(client, content_type):
    """FHIR's JSON is UTF-8 (http.html#mime-type): a body that says it is not is refused, not misread."""
    client.put("/fhir/Patient/cs", json={"resourceType": "Patient", "id": "cs"})
    if "patch" in content_type:
        r = client.patch("/fhir/Patient/cs", content=b'[]', headers={"Content-Type": content_type})
    else:
        r = client.put("/fhir/Patient/cs", content=b'{"resourceType": "Patient", "id": "cs", "gender": "male"}',
                       headers={"Content-Type": content_type})
    assert r.status_code == 415, r.text
    assert "charset" in r.json()["issue"][0]["diagnostics"]
    for utf8 in ("application/fhir+json; charset=UTF-8", "application/fhir+json;charset=utf8",
                 "application/json; charset=us-ascii", 'application/fhir+json; charset="UTF-8"'):
        ok = client.put("/fhir/Patient/cs", content=b'{"resourceType": "Patient", "id": "cs"}',
                        headers={"Content-Type": utf8})
        assert ok.status_code == 200, ok.text
