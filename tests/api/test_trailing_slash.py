"""A FHIR URL with a trailing slash is answered as the one without, never redirected (trailing_slash.py):
a redirect's Location ignores X-Forwarded-*, and clients that do not follow it, or will not send a body
twice, would get an empty 307."""
from __future__ import annotations

import pytest

PATIENT = {"resourceType": "Patient", "name": [{"family": "Slash"}]}


def _no_redirect(client, method: str, url: str, **kw):  # noqa: ANN001, ANN202
    r = client.request(method, url, follow_redirects=False, **kw)
    assert not 300 <= r.status_code < 400, (url, r.status_code, r.headers.get("location"))
    return r


def test_every_interaction_answers_as_without_the_slash(client):
    created = _no_redirect(client, "POST", "/fhir/Patient/", json=PATIENT)
    assert created.status_code == 201
    assert created.headers["location"].startswith("http://testserver/fhir/Patient/")
    pid = created.json()["id"]

    read = _no_redirect(client, "GET", f"/fhir/Patient/{pid}/")
    assert read.status_code == 200 and read.headers["etag"] == 'W/"1"' and read.json()["id"] == pid
    assert _no_redirect(client, "GET", f"/fhir/Patient/{pid}/_history/1/").json()["meta"]["versionId"] == "1"

    updated = _no_redirect(client, "PUT", f"/fhir/Patient/{pid}/", json={**PATIENT, "id": pid, "active": True})
    assert updated.status_code == 200 and updated.headers["etag"] == 'W/"2"'

    search = _no_redirect(client, "GET", "/fhir/Patient/", params={"family": "slash"}).json()
    assert search["total"] == 1
    assert [l["url"] for l in search["link"] if l["relation"] == "self"] == [
        "http://testserver/fhir/Patient?family=slash"]  # the links name the path without it

    history = _no_redirect(client, "GET", f"/fhir/Patient/{pid}/_history/").json()
    assert history["type"] == "history" and history["total"] == 2
    assert _no_redirect(client, "GET", "/fhir/metadata/").json()["resourceType"] == "CapabilityStatement"

    assert _no_redirect(client, "DELETE", f"/fhir/Patient/{pid}/").status_code in (200, 204)
    assert _no_redirect(client, "GET", f"/fhir/Patient/{pid}").status_code == 410


def test_behind_a_proxy_the_links_name_the_forwarded_base(client):
    """The test client is a trusted proxy (conftest): its X-Forwarded-* headers make the base."""
    proxied = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "ehr.example.org", "X-Forwarded-Prefix": "/ipt"}
    created = _no_redirect(client, "POST", "/fhir/Patient/", json=PATIENT, headers=proxied)
    assert created.headers["location"].startswith("https://ehr.example.org/ipt/fhir/Patient/")


@pytest.mark.parametrize(("url", "status"), [
    ("/fhir/Nope/", 404),  # no resource type: the same answer as /fhir/Nope
    ("/fhir/Patient/_nope/", 404),
    ("/fhir/Patient/_nope", 404),  # and not a redirect to its slashed twin
    ("/fhir/Patient/p1/x/", 404),
    ("/fhir/", 200),  # the base itself: system search, a route of its own
    ("/fhir/Patient//", 200),  # several slashes: all of them go
])
def test_other_paths_keep_their_own_answers(client, url, status):
    r = _no_redirect(client, "GET", url)
    assert r.status_code == status
    if status >= 400:
        assert r.json()["resourceType"] == "OperationOutcome"
