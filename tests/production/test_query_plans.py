"""PostgreSQL uses the indexes: EXPLAIN of the read by id and of the common IPT searches, on a few
thousand resources after ANALYZE, shows index scans and no scan of a whole large table: neither a
sequential scan nor an index scan without an index condition (which reads every entry of the index)."""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from ipt_fhir.app import create_app
from ipt_fhir.domain.demo_data import generate_courses
from ipt_fhir.settings import Settings
from ipt_fhir.store import migrate
from ipt_fhir.store.database import Database
from ipt_fhir.store.resources import _CURRENT_SQL
from tests.pg import scratch_database

COURSES = 25
LARGE = 300  # rows: a sequential scan of a table this big means an index is missing


@pytest.fixture(scope="module")
def loaded(request):
    url = request.getfixturevalue("fresh_postgres_url_module")
    migrate.upgrade(url)
    db = Database(url)
    app = create_app(Settings(database_url=url), db)
    started = time.perf_counter()
    with TestClient(app) as client:
        for bundle in generate_courses(COURSES, seed=11):
            r = client.post("/fhir", json=bundle)
            assert r.status_code == 200, r.text[:1000]
    load_seconds = time.perf_counter() - started
    with db.engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
        conn.commit()
    yield app, db, load_seconds
    db.dispose()


@pytest.fixture(scope="module")
def fresh_postgres_url_module():
    with scratch_database("ipt_fhir_plans") as url:
        yield url


def _table_sizes(db: Database) -> dict[str, int]:
    with db.engine.connect() as conn:
        return {r[0]: int(r[1]) for r in conn.exec_driver_sql(
            "SELECT relname, n_live_tup FROM pg_stat_user_tables")}


def _scans(plan: dict) -> list[tuple[str, str | None, bool]]:
    """(node type, table, whether it reads the whole table or index) of every node of a plan."""
    node = plan["Node Type"]
    whole = node == "Seq Scan" or (node in ("Index Scan", "Index Only Scan") and "Index Cond" not in plan)
    out = [(node, plan.get("Relation Name"), whole)]
    for child in plan.get("Plans", []):
        out.extend(_scans(child))
    return out


def _explain(db: Database, statement: str, parameters) -> list[tuple[str, str | None, bool]]:
    raw = db.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("EXPLAIN (FORMAT JSON) " + statement, parameters)
        plan = cur.fetchone()[0]
        raw.rollback()
    finally:
        raw.close()
    if isinstance(plan, str):
        plan = json.loads(plan)
    return _scans(plan[0]["Plan"])


def _captured_selects(db: Database, call) -> list[tuple[str, object]]:
    seen: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            seen.append((statement, parameters))

    sa.event.listen(db.engine, "before_cursor_execute", capture)
    try:
        call()
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", capture)
    return seen


def _assert_indexed(db: Database, plans: list[list[tuple[str, str | None, bool]]], what: str) -> None:
    sizes = _table_sizes(db)
    for scans in plans:
        whole = [(node, rel) for node, rel, all_rows in scans if all_rows and sizes.get(rel or "", 0) >= LARGE]
        assert not whole, f"{what}: whole-table scans {whole} ({ {r: sizes[r] for _, r in whole} } rows): {scans}"
    assert any(node.startswith(("Index", "Bitmap")) for scans in plans for node, _, _ in scans), f"{what}: {plans}"


def test_a_scan_of_a_whole_index_is_told_from_a_lookup():
    """No search plan here reads a whole index today, so the detector is checked on the plan shapes
    PostgreSQL gives (EXPLAIN FORMAT JSON): an index scan reads it all when it has no Index Cond."""
    lookup = {"Node Type": "Index Scan", "Relation Name": "resource", "Index Cond": "(id = 'x')"}
    whole = {"Node Type": "Index Only Scan", "Relation Name": "search_token"}
    plan = {"Node Type": "Nested Loop", "Plans": [lookup, whole, {"Node Type": "Seq Scan", "Relation Name": "keys"}]}
    assert _scans(plan) == [("Nested Loop", None, False), ("Index Scan", "resource", False),
                            ("Index Only Scan", "search_token", True), ("Seq Scan", "keys", True)]


def test_read_by_id_uses_the_primary_key(loaded):
    _app, db, _ = loaded
    with db.engine.connect() as conn:
        rid = conn.exec_driver_sql("SELECT id FROM resource WHERE resource_type = 'CarePlan' LIMIT 1").scalar_one()
    statement = _CURRENT_SQL.replace("?", "%s")
    scans = _explain(db, statement, ("CarePlan", rid))
    assert scans[0][0] in ("Index Scan", "Index Only Scan") and not scans[0][2], scans  # an Index Cond: a lookup
    assert _table_sizes(db)["resource"] >= 600


@pytest.mark.parametrize(("label", "path", "params"), [
    ("active plans of a patient", "/fhir/CarePlan", {"patient": "{patient}", "status": "active"}),
    ("sessions of a patient since a date", "/fhir/Encounter", {"patient": "{patient}", "date": "ge2025-03-01"}),
    ("PHQ-9 scores of a patient, newest first", "/fhir/Observation",
     {"patient": "{patient}", "code": "http://loinc.org|44261-6", "_sort": "-date"}),
    ("goals of a plan's patient", "/fhir/Goal", {"patient": "{patient}", "lifecycle-status": "active"}),
    ("patient by identifier", "/fhir/Patient", {"identifier": "{identifier}"}),
    ("patient by family name", "/fhir/Patient", {"family": "{family}"}),
    ("what changed since (an EHR polling)", "/fhir/Observation", {"_lastUpdated": "gt{now}"}),
    # points by their value index, Ranges by the partial index on their high end (number_search.range_terms)
    ("the most severe PHQ-9 totals", "/fhir/Observation", {"value-quantity": "ge27||{{score}}"}),
    ("scores near 1", "/fhir/Observation", {"value-quantity": "ap1||{{score}}"}),
])
def test_common_searches_use_indexes(loaded, label, path, params):
    app, db, _ = loaded
    with db.engine.connect() as conn:  # a patient with PHQ-9 scores, i.e. with held sessions
        observation = conn.exec_driver_sql(
            "SELECT content FROM resource WHERE resource_type = 'Observation' ORDER BY id LIMIT 1").scalar_one()
        patient_id = json.loads(bytes(observation))["subject"]["reference"].split("/")[1]
        content = conn.exec_driver_sql(
            "SELECT content FROM resource WHERE resource_type = 'Patient' AND id = %s", (patient_id,)).scalar_one()
    patient = json.loads(bytes(content))
    values = {"patient": f"Patient/{patient_id}", "family": patient["name"][0]["family"],
              "now": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "identifier": f"{patient['identifier'][0]['system']}|{patient['identifier'][0]['value']}"}
    query = {k: v.format(**values) for k, v in params.items()}
    with TestClient(app) as client:
        def run() -> None:
            r = client.get(path, params=query)
            assert r.status_code == 200, r.text[:500]
        selects = _captured_selects(db, run)
    assert selects, f"{label}: no SQL captured"
    _assert_indexed(db, [_explain(db, s, p) for s, p in selects], label)


@pytest.mark.parametrize("params", [{}, {"start": "2025-03-01", "end": "2026-12-31"},
                                    {"_type": "Observation,Practitioner"}, {"_since": "2020-01-01T00:00:00Z"}],
                         ids=["plain", "start-end", "type", "since"])
def test_patient_everything_starts_from_the_patient(loaded, params):
    """Patient/[id]/$everything reads the patient's rows through indexes: its page and count once tested
    their condition on every resource and scanned the whole reference index for what members refer to."""
    app, db, _ = loaded
    with db.engine.connect() as conn:  # a patient with sessions: a record with references both ways
        patient_id = conn.exec_driver_sql(
            "SELECT target_id FROM search_reference WHERE resource_type = 'Encounter' AND target_type = 'Patient' "
            "ORDER BY target_id LIMIT 1").scalar_one()
    with TestClient(app) as client:
        def run() -> None:
            r = client.get(f"/fhir/Patient/{patient_id}/$everything", params=params)
            assert r.status_code == 200, r.text[:500]
            assert r.json()["entry"], r.text[:500]
        selects = _captured_selects(db, run)
    assert len(selects) >= 2, selects  # a page and its count at least
    _assert_indexed(db, [_explain(db, s, p) for s, p in selects], f"$everything {params}")


def test_report_load_rate(loaded):
    _app, db, seconds = loaded
    resources = _table_sizes(db)["resource"]
    print(f"\nloaded {resources} resources in {COURSES} transactions in {seconds:.1f} s "
          f"({resources / seconds:.0f} resources/s through POST /fhir, TestClient, one process)")
