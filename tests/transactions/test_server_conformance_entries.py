"""A Bundle entry reads the IPT conformance resources the server publishes just as GET [type]/[id] does."""
from __future__ import annotations


def _batch(client, *urls: str) -> list[dict]:
    bundle = {"resourceType": "Bundle", "type": "batch",
              "entry": [{"request": {"method": "GET", "url": url}} for url in urls]}
    response = client.post("/fhir", json=bundle)
    assert response.status_code == 200, response.text
    return response.json()["entry"]


def test_batch_reads_the_servers_own_protocols_like_a_plain_read(client):
    plain = client.get("/fhir/PlanDefinition/ipt-brief")
    assert plain.status_code == 200
    read, vread, missing = _batch(client, "PlanDefinition/ipt-brief", "PlanDefinition/ipt-brief/_history/1",
                                  "PlanDefinition/ipt-brief/_history/2")
    assert read["response"]["status"].startswith("200") and read["resource"] == plain.json()
    assert read["response"]["etag"] == plain.headers["etag"]
    assert vread["resource"] == plain.json()
    assert missing["response"]["status"].startswith("404")
