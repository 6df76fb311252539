"""History at instance, type and system level: Bundle shape, _count paging, _since, _at."""
from __future__ import annotations

import time

from tests.api.test_crud import patient


def test_instance_history_lists_versions_newest_first_with_request_and_response(client):
    rid = client.post("/fhir/Patient", json=patient()).json()["id"]
    client.put(f"/fhir/Patient/{rid}", json=patient(id=rid, gender="female"))
    bundle = client.get(f"/fhir/Patient/{rid}/_history").json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "history"
    assert bundle["total"] == 2
    first, second = bundle["entry"]
    assert first["resource"]["meta"]["versionId"] == "2"
    assert first["request"] == {"method": "PUT", "url": f"Patient/{rid}"}
    assert first["response"]["status"] == "200 OK" and first["response"]["etag"] == 'W/"2"'
    assert second["request"] == {"method": "POST", "url": "Patient"}
    assert second["response"]["status"] == "201 Created"
    assert first["fullUrl"] == f"http://testserver/fhir/Patient/{rid}"


def test_history_of_unknown_instance_is_404(client):
    assert client.get("/fhir/Patient/nope/_history").status_code == 404


def test_type_and_system_history(client):
    before = client.get("/fhir/_history").json()["total"]  # the server's own IPT conformance resources
    client.post("/fhir/Patient", json=patient())
    client.post("/fhir/Practitioner", json={"resourceType": "Practitioner", "name": [{"family": "Who"}]})
    assert client.get("/fhir/Patient/_history").json()["total"] == 1
    assert client.get("/fhir/_history").json()["total"] == before + 2


def test_history_pages_have_no_gap_or_duplicate_while_others_write(client):
    for _ in range(25):
        client.post("/fhir/Patient", json=patient())
    seen, url = [], "/fhir/Patient/_history?_count=10"
    while url:
        bundle = client.get(url).json()
        seen += [e["fullUrl"] for e in bundle["entry"]]
        client.post("/fhir/Patient", json=patient())  # a concurrent writer must not shift the pages
        url = next((l["url"] for l in bundle["link"] if l["relation"] == "next"), None)
    assert len(seen) == 25 and len(set(seen)) == 25


def test_history_paging_links(client):
    for _ in range(5):
        client.post("/fhir/Patient", json=patient())
    bundle = client.get("/fhir/Patient/_history?_count=2").json()
    relations = {l["relation"] for l in bundle["link"]}
    assert {"self", "first", "next", "last"} <= relations and "previous" not in relations
    second = client.get(next(l["url"] for l in bundle["link"] if l["relation"] == "next")).json()
    assert {"previous", "next"} <= {l["relation"] for l in second["link"]}
    assert all(l["url"].startswith("http://testserver/fhir/Patient/_history?") for l in second["link"])


def test_since_and_at_select_versions_by_time(client):
    rid = client.post("/fhir/Patient", json=patient()).json()["id"]
    v1_time = client.get(f"/fhir/Patient/{rid}").json()["meta"]["lastUpdated"]
    time.sleep(0.05)
    client.put(f"/fhir/Patient/{rid}", json=patient(id=rid, gender="male"))
    v2_time = client.get(f"/fhir/Patient/{rid}").json()["meta"]["lastUpdated"]
    since = client.get(f"/fhir/Patient/{rid}/_history", params={"_since": v2_time}).json()
    assert [e["resource"]["meta"]["versionId"] for e in since["entry"]] == ["2"]
    at = client.get(f"/fhir/Patient/{rid}/_history", params={"_at": v1_time}).json()
    assert [e["resource"]["meta"]["versionId"] for e in at["entry"]] == ["1"]
    assert client.get(f"/fhir/Patient/{rid}/_history", params={"_since": "yesterday"}).status_code == 400


def test_count_zero_returns_only_the_total(client):
    client.post("/fhir/Patient", json=patient())
    bundle = client.get("/fhir/Patient/_history?_count=0").json()
    assert bundle["total"] == 1 and "entry" not in bundle


def test_head_on_history_and_search_has_headers_and_no_body(client):
    client.post("/fhir/Patient", json=patient())
    for path in ("/fhir/Patient/_history", "/fhir/_history", "/fhir/Patient?gender=male", "/fhir?_type=Patient"):
        r = client.head(path)
        assert r.status_code == 200, path
        assert r.content == b""
        assert r.headers.get("etag") is None  # a Bundle, not a version: no ETag
        assert r.headers["content-type"] == "application/fhir+json; charset=utf-8"  # as for GET


def test_head_on_read_sends_the_headers_of_a_get_without_the_body(client):
    rid = client.post("/fhir/Patient", json=patient()).json()["id"]
    got, head = client.get(f"/fhir/Patient/{rid}"), client.head(f"/fhir/Patient/{rid}")
    assert head.status_code == 200 and head.content == b""
    for name in ("content-type", "content-length", "etag", "last-modified"):
        assert head.headers[name] == got.headers[name], name


def test_summary_count_returns_only_the_total(client):
    for _ in range(3):
        client.post("/fhir/Patient", json=patient())
    bundle = client.get("/fhir/Patient/_history?_summary=count").json()
    assert bundle["total"] == 3 and "entry" not in bundle


def test_history_reports_201_for_each_version_an_update_created(client):
    """bundle.html#history: entry.response is the outcome of the interaction that wrote the version; a PUT
    of a new id, and a PUT after a delete, answered 201 Created."""
    assert client.put("/fhir/Patient/upc1", json={"resourceType": "Patient", "id": "upc1"}).status_code == 201
    assert client.put("/fhir/Patient/upc1", json={"resourceType": "Patient", "id": "upc1", "active": True}).status_code == 200
    assert client.delete("/fhir/Patient/upc1").status_code in (200, 204)
    assert client.put("/fhir/Patient/upc1", json={"resourceType": "Patient", "id": "upc1"}).status_code == 201
    posted = client.post("/fhir/Patient", json={"resourceType": "Patient"}).json()["id"]
    entries = client.get("/fhir/Patient/upc1/_history").json()["entry"]
    assert [(e["request"]["method"], e["response"]["status"]) for e in entries] == [
        ("PUT", "201 Created"), ("DELETE", "204 No Content"), ("PUT", "200 OK"), ("PUT", "201 Created")]
    created = client.get(f"/fhir/Patient/{posted}/_history").json()["entry"]
    assert [(e["request"]["method"], e["response"]["status"]) for e in created] == [("POST", "201 Created")]


def test_since_and_at_at_the_end_of_year_9999_are_answered_not_failed(client):
    """The last instants FHIR can write: their precision ranges end past what a date can hold."""
    pid = client.post("/fhir/Patient", json=patient()).json()["id"]
    for value in ("9999", "9999-12", "9999-12-31", "9999-12-31T23:59:59Z", "9999-12-31T23:59:59.999+00:00"):
        for path in ("/fhir/_history", "/fhir/Patient/_history", f"/fhir/Patient/{pid}/_history"):
            since = client.get(path, params={"_since": value})
            assert since.status_code == 200 and since.json().get("entry", []) == [], (path, value, since.text)
        at = client.get(f"/fhir/Patient/{pid}/_history", params={"_at": value})
        assert at.status_code == 200 and [e["resource"]["id"] for e in at.json()["entry"]] == [pid]
    shifted = client.get("/fhir/_history", params={"_since": "0001-01-01T00:00:00+01:00"})
    assert shifted.status_code == 400 and shifted.json()["resourceType"] == "OperationOutcome"
