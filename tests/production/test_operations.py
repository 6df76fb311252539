"""/healthz, /readyz, /metrics, request ids and the JSON access log (without patient data)."""
from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from ipt_fhir.app import create_app
from ipt_fhir.observability import ACCESS_LOGGER, JsonFormatter, interaction_of, log_config, request_id_var
from ipt_fhir.settings import Settings
from ipt_fhir.store import migrate
from ipt_fhir.store.database import Database
from tests.live_server import server_env

PATIENT = {"resourceType": "Patient", "name": [{"family": "Zyxwarden", "given": ["Philippa"]}],
           "birthDate": "1984-07-19"}


def test_healthz_answers_without_the_database(client):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_readyz_is_ready_on_a_current_schema(client):
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ready" and body["schema"] == body["schema_expected"] == migrate.head_revision("sqlite://")


def test_readyz_is_not_ready_on_an_old_schema(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    migrate.upgrade(url, "0001_core")
    with TestClient(create_app(Settings(database_url=url), Database(url))) as c:
        r = c.get("/readyz")
    assert r.status_code == 503
    assert r.json()["schema"] == "0001_core" and "ipt-fhir db upgrade" in r.json()["detail"]


def test_readyz_is_not_ready_when_the_database_is_unreachable():
    url = "postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=1"
    with TestClient(create_app(Settings(database_url=url), Database(url))) as c:
        r = c.get("/readyz")
        assert c.get("/healthz").status_code == 200
    assert r.status_code == 503 and r.json()["database"] == "unreachable"


def test_readyz_is_not_ready_until_the_servers_conformance_resources_are_stored(tmp_path, monkeypatch):
    """Stored at start; a start that could not store them (a database not reachable yet) leaves the worker
    not ready, and /readyz tries again."""
    from ipt_fhir.services.ipt import publish as publish_module

    url = f"sqlite:///{tmp_path / 'late.db'}"
    migrate.upgrade(url)
    real = publish_module.publish
    failures = iter([True, True])  # the start, then the first /readyz

    def flaky(db, registry):  # noqa: ANN001, ANN202
        if next(failures, False):
            raise OSError("database not there yet")
        return real(db, registry)

    monkeypatch.setattr(publish_module, "publish", flaky)
    with TestClient(create_app(Settings(database_url=url), Database(url))) as c:
        assert c.get("/fhir/PlanDefinition/ipt-brief").status_code == 404
        first = c.get("/readyz")
        assert first.status_code == 503 and "conformance resources" in first.json()["detail"]
        assert c.get("/readyz").status_code == 200
        assert c.get("/fhir/PlanDefinition/ipt-brief").status_code == 200


def test_request_id_is_echoed_or_generated(client):
    assert client.get("/fhir/metadata", headers={"X-Request-ID": "ehr-4711.a"}).headers["x-request-id"] == "ehr-4711.a"
    generated = client.get("/fhir/metadata").headers["x-request-id"]
    assert len(generated) == 32
    # A header that could forge log lines is replaced, not echoed.
    assert client.get("/healthz", headers={"X-Request-ID": "x\" injected"}).headers["x-request-id"] != "x\" injected"


def test_a_client_id_the_server_replaces_or_sends_as_correlation_id_comes_back_as_x_correlation_id(client):
    """http.html#custom: "When the server assigned id is different to the client assigned id, the server
    SHOULD also return the X-Correlation-Id header with the client's original id in it"."""
    r = client.get("/fhir/metadata", headers={"X-Request-ID": "abc def"})
    assert r.headers["x-request-id"] != "abc def" and r.headers["x-correlation-id"] == "abc def"
    kept = client.get("/fhir/metadata", headers={"X-Request-ID": "ehr-1"})
    assert kept.headers["x-request-id"] == "ehr-1" and "x-correlation-id" not in kept.headers
    echoed = client.get("/fhir/Patient/nope", headers={"X-Correlation-Id": "corr-123"})
    assert echoed.status_code == 404 and echoed.headers["x-correlation-id"] == "corr-123"
    assert "x-correlation-id" not in client.get("/fhir/metadata", headers={"X-Request-ID": "x" * 300}).headers


def test_errors_carry_the_request_id_too(client):
    r = client.get("/fhir/Patient/does-not-exist")
    assert r.status_code == 404 and r.headers["x-request-id"]


def _series(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_count_requests_and_latency_per_interaction_and_type(client):
    before = client.get("/metrics").text
    created = client.post("/fhir/Patient", json=PATIENT)
    assert created.status_code == 201
    pid = created.json()["id"]
    client.get(f"/fhir/Patient/{pid}")
    client.get(f"/fhir/Patient/{pid}")
    client.get("/fhir/Patient", params={"name": "Zyxwarden"})
    after = client.get("/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    text = after.text

    def delta(name: str, **labels: str) -> float:
        return _series(text, name, **labels) - _series(before, name, **labels)

    assert delta("ipt_fhir_requests_total", interaction="read", resource_type="Patient", status="200") == 2
    assert delta("ipt_fhir_requests_total", interaction="create", resource_type="Patient", status="201") == 1
    assert delta("ipt_fhir_requests_total", interaction="search-type", resource_type="Patient") == 1
    assert delta("ipt_fhir_request_duration_seconds_count", interaction="read", resource_type="Patient") == 2
    assert "Zyxwarden" not in text and pid not in text


def test_access_log_is_json_with_interaction_and_timing_and_no_patient_data(client, caplog):
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    created = client.post("/fhir/Patient", json=PATIENT, headers={"X-Request-ID": "req-1"})
    pid = created.json()["id"]
    client.get("/fhir/Patient", params={"name": "Zyxwarden", "birthdate": "1984-07-19"})
    client.get(f"/fhir/Patient/{pid}")
    records = [r for r in caplog.records if r.name == ACCESS_LOGGER]
    assert len(records) == 3
    lines = [json.loads(JsonFormatter().format(r)) for r in records]
    create, search, read = lines
    assert create["interaction"] == "create" and create["resource_type"] == "Patient" and create["status"] == 201
    assert search["interaction"] == "search-type" and read["interaction"] == "read"
    assert read["route"] == "/fhir/{resource_type}/{resource_id}"
    assert all(isinstance(line["duration_ms"], float) for line in lines)
    everything = json.dumps(lines)
    for secret in ("Zyxwarden", "Philippa", "1984-07-19", pid):
        assert secret not in everything


def test_json_formatter_adds_the_request_id_of_the_current_request():
    token = request_id_var.set("abc")
    try:
        record = logging.LogRecord("ipt_fhir.x", logging.WARNING, __file__, 1, "hello %s", ("world",), None)
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id_var.reset(token)
    assert line["message"] == "hello world" and line["request_id"] == "abc" and line["level"] == "warning"


def test_server_log_config_is_valid_and_silences_raw_access_lines():
    import logging.config

    cfg = log_config("info", "json")
    logging.config.dictConfig(cfg)
    try:
        assert logging.getLogger("uvicorn.access").level == logging.WARNING
    finally:
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})


@pytest.mark.parametrize(("method", "route", "expected"), [
    ("GET", "/fhir/{resource_type}/{resource_id}", "read"),
    ("HEAD", "/fhir/{resource_type}/{resource_id}", "read"),
    ("GET", "/fhir/{resource_type}/{resource_id}/_history/{version_id}", "vread"),
    ("GET", "/fhir/{resource_type:fhirtype}", "search-type"),
    ("POST", "/fhir/{resource_type:fhirtype}/_search", "search-type"),
    ("GET", "/fhir", "search-system"),
    ("GET", "/fhir/", "search-system"),
    ("POST", "/fhir/_search", "search-system"),
    ("GET", "/fhir/Patient/{patient_id}/*", "search-compartment"),
    ("GET", "/fhir/Patient/{patient_id}/{resource_type:fhirtype}", "search-compartment"),
    ("POST", "/fhir/Patient/{patient_id}/{resource_type:fhirtype}/_search", "search-compartment"),
    ("POST", "/fhir/Patient/{patient_id}/_search", "search-compartment"),
    ("POST", "/fhir/{resource_type}", "create"),
    ("PUT", "/fhir/{resource_type}/{resource_id}", "update"),
    ("PUT", "/fhir/{resource_type}", "update"),
    ("PATCH", "/fhir/{resource_type}/{resource_id}", "patch"),
    ("DELETE", "/fhir/{resource_type}/{resource_id}", "delete"),
    ("GET", "/fhir/_history", "history-system"),
    ("GET", "/fhir/{resource_type}/_history", "history-type"),
    ("GET", "/fhir/{resource_type}/{resource_id}/_history", "history-instance"),
    ("POST", "/fhir", "transaction"),
    ("GET", "/fhir/metadata", "capabilities"),
    ("POST", "/fhir/PlanDefinition/{plan_id}/$apply", "operation"),
    ("GET", "/fhir/Patient/{patient_id}/$everything", "operation"),
    ("GET", "/healthz", "other"),
    ("GET", None, "unmatched"),
])
def test_interaction_names_follow_the_fhir_spec(method, route, expected):
    assert interaction_of(method, route) == expected


def test_documentation_assets_are_not_counted_as_fhir_requests(client):
    before = client.get("/metrics").text
    assert client.get("/static/docs/swagger-ui.css").status_code == 200
    after = client.get("/metrics").text
    assert _series(after, "ipt_fhir_requests_total", interaction="unmatched") == _series(
        before, "ipt_fhir_requests_total", interaction="unmatched")


_FREEZE_PROBE = """
import gc, json, sys
from fastapi.testclient import TestClient
from ipt_fhir.app import create_app
from ipt_fhir.fhir.validation.compiler import type_node
from ipt_fhir.settings import Settings
from ipt_fhir.store.database import Database

url = sys.argv[1]
before = gc.get_freeze_count()
with TestClient(create_app(Settings(database_url=url), Database(url))):
    node = type_node("CarePlan")
    print(json.dumps({"before": before, "during": gc.get_freeze_count(), "tracked": gc.is_tracked(node),
                      "walked": id(node) in {id(o) for o in gc.get_objects()}}))
"""


def test_a_worker_freezes_what_it_built_at_start(sqlite_template, tmp_path):
    """The definitions and compiled validator live as long as the worker: frozen at start, full garbage
    collections stop walking them (each such walk stalled every request in flight for ~90 ms). In a
    process of its own: a test process keeps the first freeze of any app started in it."""
    database = tmp_path / "gc.db"
    shutil.copy(sqlite_template, database)
    out = subprocess.run([sys.executable, "-c", _FREEZE_PROBE, f"sqlite:///{database}"], capture_output=True,
                         text=True, env=server_env(), timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    assert probe["before"] == 0 and probe["during"] > 100_000, probe
    assert probe["tracked"] and not probe["walked"], probe  # the compiled CarePlan node is frozen
