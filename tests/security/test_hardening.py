"""Startup rule, security headers, CORS, body and nesting limits, no stack traces, no patient data in logs."""
from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from ipt_fhir.app import create_app
from ipt_fhir.security.middleware import InsecureConfiguration, check_startup
from ipt_fhir.settings import Settings

from .conftest import ADMIN, audit_events, observation, patient


def test_auth_off_is_refused_outside_embedded_sqlite_on_localhost(caplog):
    with pytest.raises(InsecureConfiguration):
        check_startup(Settings(database_url="postgresql+psycopg://u@db/x", auth="off"))
    with pytest.raises(InsecureConfiguration):
        check_startup(Settings(database_url="sqlite:///./x.db", auth="off"), host="0.0.0.0")
    with caplog.at_level(logging.WARNING):
        check_startup(Settings(database_url="sqlite:///./x.db", auth="off"), host="127.0.0.1")
    assert "authorization is OFF" in caplog.text


def test_smart_needs_keys_issuer_and_audience():
    with pytest.raises(InsecureConfiguration):
        check_startup(Settings(database_url="postgresql+psycopg://u@db/x", auth="smart", jwks="/k.json"))
    check_startup(Settings(database_url="postgresql+psycopg://u@db/x", auth="smart", jwks="/k.json",
                           jwt_issuer="https://a", jwt_audience="https://b"), host="0.0.0.0")
    with pytest.raises(InsecureConfiguration):
        check_startup(Settings(database_url="postgresql+psycopg://u@db/x", auth="smart", jwt_hs256_secret="s",
                               jwt_issuer="https://a", jwt_audience="https://b"))


def test_serve_refuses_auth_off_on_postgresql(monkeypatch):
    from typer.testing import CliRunner

    from ipt_fhir import cli, settings

    monkeypatch.setenv("IPT_FHIR_DATABASE_URL", "postgresql+psycopg://u@127.0.0.1:1/x")
    monkeypatch.setenv("IPT_FHIR_AUTH", "off")
    settings.get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli.app, ["serve"])
    finally:
        settings.get_settings.cache_clear()
    assert result.exit_code == 2
    assert "refusing to start" in result.output


def test_security_headers_on_fhir_responses(secure_client, keys):
    r = secure_client.get("/fhir/Patient", headers=keys.headers("user/*.rs"))
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]


def test_cors_is_off_by_default_and_configurable(secure_client, secure_settings, database):
    r = secure_client.options("/fhir/Patient", headers={"Origin": "https://app.example",
                                                        "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in r.headers
    app = create_app(secure_settings.model_copy(update={"cors_origins": "https://app.example"}), database)
    with TestClient(app) as c:
        r = c.options("/fhir/Patient", headers={"Origin": "https://app.example", "Access-Control-Request-Method": "GET"})
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        assert r.headers["x-content-type-options"] == "nosniff"  # the preflight's answer is secured too
        simple = c.get("/fhir/metadata", headers={"Origin": "https://app.example"})
        assert "x-progress" in simple.headers["access-control-expose-headers"].lower()  # bulk polling from a browser
        r = c.options("/fhir/Patient", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
        assert r.headers.get("access-control-allow-origin") != "https://evil.example"
        assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"  # as every error is
        assert "origin" in r.json()["issue"][0]["diagnostics"].lower()
        # the request headers the API reads may be sent from a browser: conditional reads, gzip bodies, ids
        for header in ("if-modified-since", "content-encoding", "x-request-id", "x-security-context"):
            r = c.options("/fhir/Patient/x", headers={"Origin": "https://app.example",
                                                      "Access-Control-Request-Method": "GET",
                                                      "Access-Control-Request-Headers": header})
            assert r.status_code == 200, (header, r.text)
        assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()


def test_deep_json_and_large_bodies_are_refused(secure_client, keys):
    h = {**keys.headers(ADMIN), "Content-Type": "application/fhir+json"}
    deep = '{"resourceType":"Basic","code":{"text":"x"},"extension":' + "[" * 200 + "]" * 200 + "}"
    r = secure_client.post("/fhir/Basic", content=deep, headers=h)
    assert r.status_code == 400 and "nesting" in r.text
    big = b'{"resourceType":"Basic","x":"' + b"a" * (17 * 1024 * 1024) + b'"}'
    assert secure_client.post("/fhir/Basic", content=big, headers=h).status_code == 413


def test_errors_carry_no_stack_trace(secure_client, keys, monkeypatch, database):
    from ipt_fhir.services.resources import ResourceService

    def boom(*_a, **_k):
        raise RuntimeError("secret internals at /srv/app.py line 42")

    monkeypatch.setattr(ResourceService, "read", boom)
    before = len(audit_events(database))
    with TestClient(secure_client.app, raise_server_exceptions=False) as c:
        r = c.get("/fhir/Patient/x", headers=keys.headers("user/*.rs"))
    assert r.status_code == 500
    assert "Traceback" not in r.text and "secret internals" not in r.text
    # answered inside the other middlewares: dated, with the request id and the security headers
    assert len(r.headers.get_list("date")) == 1 and r.headers["x-request-id"]
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["cache-control"] == "no-store"
    assert r.json()["resourceType"] == "OperationOutcome"
    failed = audit_events(database)[before:]  # and audited, as a read that failed
    assert [(e["subtype"][0]["code"], e["outcome"]) for e in failed] == [("read", "8")], failed


def test_a_middlewares_own_exception_is_a_dated_outcome_without_stack_trace(secure_settings, database, keys,
                                                                           monkeypatch):
    """The last resort, Starlette's handler outside every middleware of ours (the one writing Date
    included), still answers an OperationOutcome with one Date."""
    from ipt_fhir.observability import RequestContextMiddleware

    async def boom(self, scope, receive, send):  # noqa: ANN001
        if scope["type"] != "http":  # the app's start-up passes
            return await self.app(scope, receive, send)
        raise RuntimeError("secret internals of a middleware")

    monkeypatch.setattr(RequestContextMiddleware, "__call__", boom)
    with TestClient(create_app(secure_settings, database), raise_server_exceptions=False) as c:
        r = c.get("/fhir/metadata", headers=keys.headers("user/*.rs"))
    assert r.status_code == 500
    assert "secret internals" not in r.text and r.json()["resourceType"] == "OperationOutcome"
    assert len(r.headers.get_list("date")) == 1


def test_an_exception_after_the_response_started_is_not_answered_twice(secure_settings, database):
    """Once the status line is out there is no 500 to send: the exception goes on up to the server, which
    drops the connection (a second response on it would be garbage to the client)."""
    from fastapi.responses import StreamingResponse

    async def body():
        yield b"{"
        raise RuntimeError("failed mid-body")

    app = create_app(secure_settings, database)
    app.add_api_route("/test-fails-mid-body", lambda: StreamingResponse(body()))
    with TestClient(app) as c, pytest.raises(RuntimeError, match="failed mid-body"):
        c.get("/test-fails-mid-body")


def test_no_patient_data_in_logs(secure_client, keys, caplog):
    caplog.set_level(logging.DEBUG)
    c = secure_client
    family, mrn = "Quetzalcoatlus", "MRN-Quetzalcoatlus"
    p = patient(c, keys, "Quetzalcoatlus")
    o = observation(c, keys, p["id"])
    h = keys.headers(ADMIN)
    c.get(f"/fhir/Patient?family={family}", headers=h)
    c.get(f"/fhir/Patient?identifier=urn:test:mrn|{mrn}", headers=h)
    c.get(f"/fhir/Patient/{p['id']}", headers=h)
    c.get(f"/fhir/Patient/{p['id']}/$everything", headers=h)
    c.put(f"/fhir/Patient/{p['id']}", json={**p, "name": [{"family": family}]}, headers=h)
    c.post("/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": family}], "gender": "bogus"}, headers=h)
    c.get(f"/fhir/Observation/{o['id']}", headers=keys.headers("user/Patient.rs"))
    c.get("/fhir/Patient", headers={"Authorization": "Bearer garbage"})
    # the test client's own request log (httpx) is not the server's
    server = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    text = "".join(r.getMessage() + str(r.__dict__) for r in server)
    for secret in (family, mrn, p["id"]):
        assert secret not in text, secret


def test_bulk_export_needs_unconfined_wildcard_and_sensitive_scopes(secure_client, keys):
    c = secure_client
    p = patient(c, keys, "Bulk")
    async_ = {"Prefer": "respond-async"}
    for scope, kw in (("patient/*.rs", {"patient": p["id"]}), ("user/Observation.rs", {}), ("user/*.rs", {})):
        r = c.get("/fhir/$export", headers={**async_, **keys.headers(scope, **kw)})
        assert r.status_code == 403, (scope, r.text)
        r = c.get("/fhir/Patient/$export", headers={**async_, **keys.headers(scope, **kw)})
        assert r.status_code == 403, (scope, r.text)
    r = c.get("/fhir/$export", headers={**async_, **keys.headers("system/*.rs " + ADMIN.split()[-1])})
    assert r.status_code == 202, r.text


def test_an_export_holds_audit_events_only_for_a_token_that_may_search_them_and_says_it_needs_a_token(
        secure_client, keys):
    """A wildcard scope covers no AuditEvent, in an export as in a search; and the files are served to
    requests with a token, which the manifest says."""
    import time

    from .conftest import SENSITIVE

    c = secure_client
    patient(c, keys, "Exported")  # its write is audited: AuditEvents exist
    async_ = {"Prefer": "respond-async"}
    wildcard = keys.headers(f"system/*.rs {SENSITIVE}")

    def manifest(headers: dict) -> dict:
        r = c.get("/fhir/$export", headers={**async_, **headers})
        assert r.status_code == 202, r.text
        for _ in range(300):
            polled = c.get(r.headers["Content-Location"].split("testserver", 1)[1], headers=headers)
            if polled.status_code == 200:
                return polled.json()
            time.sleep(0.1)
        raise AssertionError("export did not finish")

    without = manifest(wildcard)
    types = {o["type"] for o in without["output"]}
    assert "AuditEvent" not in types and "Patient" in types
    assert without["requiresAccessToken"] is True
    r = c.get("/fhir/$export?_type=AuditEvent", headers={**async_, **wildcard})
    assert r.status_code == 403
    with_audit = manifest(keys.headers(f"system/*.rs system/AuditEvent.rs {SENSITIVE}"))
    assert "AuditEvent" in {o["type"] for o in with_audit["output"]}


def test_a_bulk_job_is_seen_only_by_the_client_that_started_it(secure_client, keys):
    from .conftest import SENSITIVE

    c = secure_client
    patient(c, keys, "Owned")
    scope = f"system/*.rs {SENSITIVE}"
    mine, theirs = keys.headers(scope, client_id="app-a"), keys.headers(scope, client_id="app-b", sub="other")
    r = c.get("/fhir/$export", headers={"Prefer": "respond-async", **mine})
    assert r.status_code == 202, r.text
    status = r.headers["Content-Location"].split("testserver", 1)[1]
    assert c.get(status, headers=theirs).status_code == 404
    assert c.delete(status, headers=theirs).status_code == 404
    assert c.get(status, headers=mine).status_code in (200, 202)
