"""Binary in its native form (binary.html#rest): non-FHIR reads get the content with its own type,
non-FHIR writes become a Binary; FHIR clients keep getting and sending the resource."""
from __future__ import annotations

import base64

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
FHIR = {"Accept": "application/fhir+json"}


def test_native_content_posted_comes_back_native_or_as_the_resource(client):
    created = client.post("/fhir/Binary", content=PNG,
                          headers={"Content-Type": "image/png", "X-Security-Context": "Patient/p1"})
    assert created.status_code == 201, created.text
    rid = created.json()["id"]
    assert created.json()["contentType"] == "image/png"

    native = client.get(f"/fhir/Binary/{rid}", headers={"Accept": "image/png"})
    assert native.status_code == 200 and native.content == PNG
    assert native.headers["content-type"] == "image/png"
    assert native.headers["etag"] == 'W/"1"' and native.headers["x-security-context"] == "Patient/p1"
    assert client.get(f"/fhir/Binary/{rid}", headers={"Accept": "*/*"}).content == PNG

    resource = client.get(f"/fhir/Binary/{rid}", headers=FHIR).json()
    assert resource["resourceType"] == "Binary" and base64.b64decode(resource["data"]) == PNG
    assert resource["securityContext"] == {"reference": "Patient/p1"}
    assert client.get(f"/fhir/Binary/{rid}?_format=json").json()["contentType"] == "image/png"
    assert client.get(f"/fhir/Binary/{rid}/_history/1", headers={"Accept": "image/png"}).content == PNG

    head = client.head(f"/fhir/Binary/{rid}", headers={"Accept": "image/png"})
    assert head.content == b"" and head.headers["content-length"] == str(len(PNG))


def test_native_content_put_updates_the_binary(client):
    put = client.put("/fhir/Binary/doc1", content=b"%PDF-1.7 first", headers={"Content-Type": "application/pdf"})
    assert put.status_code == 201, put.text
    again = client.put("/fhir/Binary/doc1", content=b"%PDF-1.7 second", headers={"Content-Type": "application/pdf"})
    assert again.status_code == 200
    read = client.get("/fhir/Binary/doc1", headers={"Accept": "application/pdf"})
    assert read.content == b"%PDF-1.7 second" and read.headers["content-type"] == "application/pdf"


def test_a_binary_sent_as_fhir_json_is_still_a_resource(client):
    body = {"resourceType": "Binary", "contentType": "text/plain", "data": base64.b64encode(b"hello").decode()}
    rid = client.post("/fhir/Binary", json=body).json()["id"]
    assert client.get(f"/fhir/Binary/{rid}", headers={"Accept": "text/plain"}).content == b"hello"
    assert client.get(f"/fhir/Binary/{rid}", headers=FHIR).json()["data"] == body["data"]


def test_other_types_still_refuse_non_fhir_bodies(client):
    refused = client.post("/fhir/Patient", content=b"<x/>", headers={"Content-Type": "image/png"})
    assert refused.status_code == 415 and refused.json()["resourceType"] == "OperationOutcome"
