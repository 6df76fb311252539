"""Content codings (RFC 9110 8.4): compressed request bodies are decoded within the body limit, other
codings are a 415 naming the accepted ones, and large responses are gzipped for clients that accept it."""
from __future__ import annotations

import asyncio
import gzip
import json
import zlib

import pytest

from ipt_fhir.api.content_coding import COMPRESS_MIN_BYTES, ContentCodingMiddleware, accepts_gzip

FHIR_JSON = {"Content-Type": "application/fhir+json"}
PATIENT = {"resourceType": "Patient", "active": True, "name": [{"family": "Gzip", "given": ["Ada"]}],
           "extension": [{"url": "http://example.org/fhir/StructureDefinition/note", "valueString": "kept"}]}


def deflate(data: bytes) -> bytes:  # HTTP's "deflate" is the zlib format (RFC 9110 8.4.1.2)
    return zlib.compress(data)


def count(client, family: str) -> int:
    return client.get("/fhir/Patient", params={"family": family, "_summary": "count"}).json()["total"]


@pytest.mark.parametrize("coding, encode", [("gzip", gzip.compress), ("x-gzip", gzip.compress),
                                            ("GZip", gzip.compress), ("deflate", deflate)])
def test_a_compressed_body_is_decoded_and_stored_as_sent(client, coding, encode):
    r = client.post("/fhir/Patient", content=encode(json.dumps(PATIENT).encode()),
                    headers={**FHIR_JSON, "Content-Encoding": coding})
    assert r.status_code == 201, r.text
    stored = client.get(r.headers["Location"].split("/_history")[0]).json()
    assert {k: v for k, v in stored.items() if k not in ("id", "meta")} == PATIENT


def test_a_compressed_transaction_and_a_compressed_chunked_update(client):
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:8d2f6e0a-1b7c-4e59-9a43-0c6f2b1d7e11", "resource": {**PATIENT, "name": [{"family": "Txgz"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "PHQ-9"},
                      "subject": {"reference": "urn:uuid:8d2f6e0a-1b7c-4e59-9a43-0c6f2b1d7e11"}},
         "request": {"method": "POST", "url": "Observation"}}]}
    r = client.post("/fhir", content=gzip.compress(json.dumps(bundle).encode()),
                    headers={**FHIR_JSON, "Content-Encoding": "gzip"})
    assert r.status_code == 200, r.text
    assert [e["response"]["status"][:3] for e in r.json()["entry"]] == ["201", "201"]
    patient_id = r.json()["entry"][0]["response"]["location"].split("/")[1]

    body = gzip.compress(json.dumps({**PATIENT, "id": patient_id, "active": False}).encode())

    def chunks():  # no Content-Length: the coded body arrives in parts
        for i in range(0, len(body), 7):
            yield body[i:i + 7]

    r = client.put(f"/fhir/Patient/{patient_id}", content=chunks(), headers={**FHIR_JSON, "Content-Encoding": "gzip"})
    assert r.status_code == 200, r.text
    assert client.get(f"/fhir/Patient/{patient_id}").json()["active"] is False


@pytest.mark.parametrize("body", [
    json.dumps({**PATIENT, "name": [{"family": "Notgz"}]}).encode(),  # not compressed at all
    gzip.compress(json.dumps({**PATIENT, "name": [{"family": "Notgz"}]}).encode())[:-12],  # cut short
    gzip.compress(json.dumps({**PATIENT, "name": [{"family": "Notgz"}]}).encode()) + b"trailing",
])
def test_a_body_that_is_not_in_its_coding_is_400_and_nothing_is_written(client, body):
    r = client.post("/fhir/Patient", content=body, headers={**FHIR_JSON, "Content-Encoding": "gzip"})
    assert r.status_code == 400, r.text
    issue = r.json()["issue"][0]
    assert issue["code"] == "structure" and "gzip" in issue["diagnostics"]
    assert count(client, "Notgz") == 0


def test_a_decoded_body_past_the_limit_is_413_however_small_on_the_wire(settings, database):
    from fastapi.testclient import TestClient

    from ipt_fhir.app import create_app

    settings.max_body_bytes = 4000
    bomb = gzip.compress(b'{"resourceType": "Patient", "text": {"status": "generated", "div": "'
                         + b" " * 20_000_000 + b'"}}')
    assert len(bomb) < 30_000  # well within the limit as sent
    with TestClient(create_app(settings, database)) as small:
        r = small.post("/fhir/Patient", content=bomb, headers={**FHIR_JSON, "Content-Encoding": "gzip"})
        assert r.status_code == 413, r.text
        assert r.json()["issue"][0]["code"] == "too-long"
        fits = small.post("/fhir/Patient", content=gzip.compress(json.dumps(PATIENT).encode()),
                          headers={**FHIR_JSON, "Content-Encoding": "gzip"})
        assert fits.status_code == 201


@pytest.mark.parametrize("coding", ["br", "zstd", "compress", "gzip, gzip", "gzip, br"])
def test_another_coding_is_415_naming_the_accepted_ones(client, coding):
    r = client.post("/fhir/Patient", content=gzip.compress(json.dumps(PATIENT).encode()),
                    headers={**FHIR_JSON, "Content-Encoding": coding})
    assert r.status_code == 415, r.text
    assert r.headers["accept-encoding"] == "gzip, deflate"  # RFC 9110 15.5.16
    assert r.json()["issue"][0]["code"] == "not-supported"
    assert r.json()["issue"][0]["expression"] == ["Patient"]
    # the field says nothing about a body that is not there
    assert client.get("/fhir/Patient", headers={"Content-Encoding": coding}).status_code == 200
    empty = client.post("/fhir/Patient", content=b"", headers={**FHIR_JSON, "Content-Encoding": coding})
    assert empty.status_code == 400 and empty.json()["issue"][0]["code"] == "required"


def test_identity_is_no_coding(client):
    r = client.post("/fhir/Patient", content=json.dumps(PATIENT).encode(),
                    headers={**FHIR_JSON, "Content-Encoding": "identity"})
    assert r.status_code == 201


def big_patient() -> dict:
    div = "<div xmlns=\"http://www.w3.org/1999/xhtml\">" + "<p>session note</p>" * 800 + "</div>"
    return {**PATIENT, "text": {"status": "generated", "div": div}}


def test_a_large_response_is_gzipped_for_a_client_that_accepts_it(client):
    created = client.post("/fhir/Patient", json=big_patient(), headers=FHIR_JSON)
    path = created.headers["Location"].split("/_history")[0]
    plain = client.get(path, headers={"Accept-Encoding": "identity"})
    coded = client.get(path, headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in plain.headers
    assert int(plain.headers["content-length"]) == len(plain.content) > COMPRESS_MIN_BYTES
    assert coded.headers["content-encoding"] == "gzip"
    assert int(coded.headers["content-length"]) < len(plain.content) // 5  # the compressed length
    assert coded.content == plain.content  # httpx decoded it
    for name in ("etag", "last-modified", "content-type", "x-content-type-options"):
        assert coded.headers[name] == plain.headers[name]
    assert "Accept-Encoding" in plain.headers["vary"] and "Accept-Encoding" in coded.headers["vary"]

    bundle = client.get("/fhir/Patient", params={"_id": path.split("/")[-1]}, headers={"Accept-Encoding": "gzip"})
    assert bundle.headers["content-encoding"] == "gzip" and bundle.json()["total"] == 1


@pytest.mark.parametrize("accept", ["identity", "gzip;q=0", "*;q=0", "br", "gzip;q=0, *", "deflate"])
def test_no_gzip_where_the_client_refuses_it(client, accept):
    created = client.post("/fhir/Patient", json=big_patient(), headers=FHIR_JSON)
    r = client.get(created.headers["Location"].split("/_history")[0], headers={"Accept-Encoding": accept})
    assert r.status_code == 200 and "content-encoding" not in r.headers


def test_small_and_head_responses_are_not_compressed(client):
    small = client.post("/fhir/Patient", json=PATIENT, headers=FHIR_JSON)
    r = client.get(small.headers["Location"].split("/_history")[0], headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in r.headers and len(r.content) < COMPRESS_MIN_BYTES
    assert "Accept-Encoding" in r.headers["vary"]  # another representation exists all the same
    big = client.post("/fhir/Patient", json=big_patient(), headers=FHIR_JSON)
    path = big.headers["Location"].split("/_history")[0]
    head = client.head(path, headers={"Accept-Encoding": "gzip"})
    assert head.status_code == 200 and "content-encoding" not in head.headers and head.content == b""
    assert head.headers["content-length"] == client.get(path, headers={"Accept-Encoding": "identity"}).headers["content-length"]


def test_a_binary_served_in_its_own_media_type_is_not_compressed(client):
    import os

    png = b"\x89PNG\r\n\x1a\n" + os.urandom(3 * COMPRESS_MIN_BYTES)
    created = client.post("/fhir/Binary", content=png, headers={"Content-Type": "image/png"})
    assert created.status_code == 201, created.text
    path = created.headers["Location"].split("/_history")[0]
    native = client.get(path, headers={"Accept": "*/*", "Accept-Encoding": "gzip"})
    assert native.headers["content-type"] == "image/png" and native.content == png
    assert "content-encoding" not in native.headers
    as_fhir = client.get(path, headers={"Accept": "application/fhir+json", "Accept-Encoding": "gzip"})
    assert as_fhir.headers["content-encoding"] == "gzip"  # the Binary resource, its data in base64


@pytest.mark.parametrize("value, expected", [
    ("gzip", True), ("GZIP", True), ("x-gzip", True), ("deflate, gzip;q=0.5", True), ("*", True),
    ("br;q=1, *;q=0.1", True), ("gzip;q=0.001", True),
    ("", False), ("identity", False), ("gzip;q=0", False), ("gzip;q=0.0, *", False), ("*;q=0", False),
    ("br, deflate", False), ("gzip;q=nonsense", False), ("gzipx", False),
])
def test_accept_encoding_weights(value, expected):
    assert accepts_gzip(value) is expected


def test_a_streamed_body_is_compressed_part_by_part():
    """Bulk export files are sent in parts (FileResponse): each part is compressed as it goes out, and
    the whole decodes to what the app sent; the length is not known up front."""
    parts = [json.dumps({"resourceType": "Patient", "id": str(i)}).encode() * 200 + b"\n" for i in range(5)]

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/fhir+ndjson"), (b"content-length", b"999")]})
        for i, part in enumerate(parts):
            await send({"type": "http.response.body", "body": part, "more_body": i < len(parts) - 1})

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": "GET", "headers": [(b"accept-encoding", b"gzip")]}
    asyncio.run(ContentCodingMiddleware(app, max_bytes=1000)(scope, receive, send))
    headers = dict(sent[0]["headers"])
    assert headers[b"content-encoding"] == b"gzip" and b"content-length" not in headers
    bodies = [m["body"] for m in sent[1:]]
    assert len(bodies) == len(parts) and all(bodies)  # each part went out when the app sent it
    assert gzip.decompress(b"".join(bodies)) == b"".join(parts)
