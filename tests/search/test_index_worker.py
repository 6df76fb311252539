"""The index worker process (store/index_worker.py) extracts new resources' index rows for the background
mover; what it extracts must be what the server would, and nothing it extracted from an older snapshot
may reach the index once the resource changed."""
from __future__ import annotations

import logging
import time

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from ipt_fhir.app import create_app
from ipt_fhir.settings import Settings
from ipt_fhir.store import pending_index
from ipt_fhir.store.database import Database
from ipt_fhir.store.search_tables import pending_index_table

BASE = "http://testserver/fhir"
INDEX_WORKER = True  # quiet_sqlite_db (conftest.py) runs one


@pytest.fixture
def db(quiet_sqlite_db):  # no background rounds: the tests drive the worker
    return quiet_sqlite_db


@pytest.fixture
def client(quiet_sqlite_client):
    return quiet_sqlite_client


def _patient(family: str, **extra) -> dict:
    return {"resourceType": "Patient", "name": [{"family": family}], "gender": "female", **extra}


def _pending(db: Database) -> int:
    with db.engine.connect() as conn:  # not db.read(): that would index them first
        return conn.execute(sa.select(sa.func.count()).select_from(pending_index_table)).scalar_one()


def _families(client: TestClient, family: str) -> list[str]:
    return [e["resource"]["id"] for e in client.get("/fhir/Patient", params={"family": family}).json().get("entry", [])]


def _snapshot_extraction(db: Database, limit: int | None = None) -> pending_index.Extracted:
    """What the worker extracts, from a read connection of this process: a snapshot now."""
    with db.engine.connect() as conn:
        return pending_index.extract_oldest(conn.connection.driver_connection, limit)


def _insert(db: Database, extracted: pending_index.Extracted) -> int:
    with db._writer, db._transaction() as conn:
        return pending_index.move(conn.connection.driver_connection, extracted=extracted)


def _worker_extract(db: Database, limit: int) -> pending_index.Extracted:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        extracted = db._index_worker.extract(limit)
        if extracted is not None:
            return extracted
        time.sleep(0.05)  # starting: the first calls start it and find it not ready yet
    raise AssertionError("the index worker did not become ready")


def test_the_worker_extracts_exactly_what_the_server_would(client, db):
    ids = [client.post("/fhir/Patient", json=_patient(f"Worker{i:02d}", birthDate=f"19{50 + i}-02-03")).json()["id"]
           for i in range(20)]
    plan = {"resourceType": "CarePlan", "status": "active", "intent": "plan", "subject": {"reference": f"Patient/{ids[0]}"},
            "period": {"start": "2026-01-05"}, "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "718347000"}]}]}
    client.post("/fhir/CarePlan", json=plan)
    assert _pending(db) == 21

    by_worker = _worker_extract(db, 15)
    assert by_worker == _snapshot_extraction(db, 15)  # the same keys and rows, value for value
    assert by_worker.count == 15 and set(by_worker.rows) >= {"token", "string", "date"}
    assert _insert(db, by_worker) == 15
    assert _pending(db) == 6
    assert db.move_pending_index(128) == 6  # the next chunk: by the worker too
    assert _pending(db) == 0
    for i, pid in enumerate(ids):
        assert _families(client, f"worker{i:02d}") == [pid]
    found = client.get("/fhir/CarePlan", params={"subject": f"Patient/{ids[0]}", "date": "ge2026-01-05", "category": "718347000"}).json()
    assert found["total"] == 1


def test_rows_extracted_before_an_update_never_reach_the_index(client, db):
    pid = client.post("/fhir/Patient", json=_patient("Before")).json()["id"]
    stale = _snapshot_extraction(db)
    assert stale.count == 1
    client.put(f"/fhir/Patient/{pid}", json={**_patient("After"), "id": pid})  # indexes what was pending first
    assert _pending(db) == 0
    assert _insert(db, stale) == 0
    assert _families(client, "before") == [] and _families(client, "after") == [pid]
    with db.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT count(*) FROM search_string WHERE resource_id = ? AND param = 'family'",
                                    (pid,)).scalar_one()
    assert rows == 1


def test_rows_extracted_before_a_delete_never_reach_the_index(client, db):
    pid = client.post("/fhir/Patient", json=_patient("Gone")).json()["id"]
    stale = _snapshot_extraction(db)
    assert client.delete(f"/fhir/Patient/{pid}").status_code in (200, 204)
    assert _insert(db, stale) == 0
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM search_token WHERE resource_id = ?", (pid,)).scalar_one() == 0


def test_an_extraction_never_indexes_another_resource_under_a_reused_pending_rowid(client, db):
    first = client.post("/fhir/Patient", json=_patient("First")).json()["id"]
    stale = _snapshot_extraction(db)
    assert _families(client, "first") == [first]  # the search indexed it: the pending table is empty
    second = client.post("/fhir/Patient", json=_patient("Second")).json()["id"]
    with db.engine.connect() as conn:
        (rowid,) = conn.exec_driver_sql("SELECT rowid FROM search_pending").one()
    assert f"[{rowid},\"Patient\",\"{first}\"]" in stale.keys  # SQLite gave the second the first's rowid
    assert _insert(db, stale) == 0
    assert _pending(db) == 1  # the second is still pending, and indexed from its own JSON
    assert _families(client, "first") == [first] and _families(client, "second") == [second]
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM search_string WHERE resource_id = ? AND param = 'family'",
                                    (first,)).scalar_one() == 1


def test_without_a_worker_that_answers_the_server_extracts_itself(client, db, caplog):
    client.post("/fhir/Patient", json=_patient("Early"))
    _worker_extract(db, 1)  # started and ready
    db._index_worker._proc.kill()
    db._index_worker._proc.wait()
    for i in range(3):
        client.post("/fhir/Patient", json=_patient(f"Late{i}"))
    with caplog.at_level(logging.WARNING, logger="ipt_fhir.store.index_worker"):
        assert db.move_pending_index(128) == 4  # extracted here
    assert "search index worker did not answer" in caplog.text
    assert db._index_worker._proc is None and db._index_worker._retry_at > time.monotonic()
    assert [len(_families(client, f"late{i}")) for i in range(3)] == [1, 1, 1]
    db._index_worker._retry_at = 0  # its restart is due
    client.post("/fhir/Patient", json=_patient("Again"))
    assert _worker_extract(db, 5).count == 1


def test_a_server_on_sqlite_runs_a_worker_and_stops_it_with_itself(sqlite_url, tmp_path):
    assert Settings().index_worker == "on"  # the default
    app = create_app(Settings(database_url=sqlite_url, bulk_dir=str(tmp_path / "bulk")))
    database: Database = app.state.database
    worker = database._index_worker
    with TestClient(app, base_url="http://testserver") as c:
        pid = c.post("/fhir/Patient", json=_patient("Served")).json()["id"]
        deadline = time.monotonic() + 60
        while not worker._ready and time.monotonic() < deadline:  # the background rounds start it
            c.post("/fhir/Patient", json=_patient("More"))
            time.sleep(0.2)
        assert worker._ready
        proc = worker._proc
        assert c.get("/fhir/Patient", params={"family": "served"}).json()["entry"][0]["resource"]["id"] == pid
    assert proc.wait(timeout=10) is not None  # it ended with the server
    assert worker._proc is None


def test_no_worker_for_an_unsaved_database_or_when_turned_off(tmp_path):
    assert Database("sqlite://", index_worker=True)._index_worker is None
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'x.db'}", index_worker="off",
                              bulk_dir=str(tmp_path / "bulk")))
    assert app.state.database._index_worker is None


def test_a_search_that_finds_resources_pending_has_the_worker_extract_them(client, db, monkeypatch):
    client.post("/fhir/Patient", json=_patient("Ready"))
    _worker_extract(db, 1)  # started and ready (nothing moved: extraction alone)
    ids = [client.post("/fhir/Patient", json=_patient(f"Found{i}")).json()["id"] for i in range(4)]
    inline = []
    monkeypatch.setattr(pending_index, "extract_oldest",
                        lambda *a, **k: inline.append(a) or pytest.fail("extracted in the server"))
    assert [_families(client, f"found{i}") for i in range(4)] == [[pid] for pid in ids]
    assert _pending(db) == 0 and inline == []


def test_a_read_never_starts_with_resources_created_while_the_worker_extracted(client, db, monkeypatch):
    client.post("/fhir/Patient", json=_patient("Ready"))
    _worker_extract(db, 1)
    early = client.post("/fhir/Patient", json=_patient("Early")).json()["id"]
    worker_extract, late = db._index_worker.extract, []

    def extract_then_another_create(limit=None):
        extracted = worker_extract(limit)
        late.append(client.post("/fhir/Patient", json=_patient("Late")).json()["id"])  # not in its snapshot
        return extracted

    monkeypatch.setattr(db._index_worker, "extract", extract_then_another_create)
    with db.read() as conn:
        assert not pending_index.pending(conn.connection.driver_connection)  # the late one was indexed too
    assert len(late) == 1
    monkeypatch.undo()
    assert _families(client, "early") == [early] and _families(client, "late") == late


def test_an_update_indexes_its_own_resource_and_leaves_the_others_pending(client, db):
    ids = [client.post("/fhir/Patient", json=_patient(f"Batch{i}")).json()["id"] for i in range(5)]
    assert client.put(f"/fhir/Patient/{ids[2]}", json={**_patient("Renamed"), "id": ids[2]}).status_code == 200
    assert _pending(db) == 4  # the update extracted no one else's rows on its way
    assert _families(client, "renamed") == [ids[2]] and _families(client, "batch2") == []
    assert [_families(client, f"batch{i}") for i in (0, 1, 3, 4)] == [[ids[i]] for i in (0, 1, 3, 4)]


def test_a_worker_that_stops_answering_is_killed_and_the_caller_extracts_itself(client, db, monkeypatch, caplog):
    import signal

    from ipt_fhir.store import index_worker

    client.post("/fhir/Patient", json=_patient("Ready"))
    _worker_extract(db, 1)
    proc = db._index_worker._proc
    monkeypatch.setattr(index_worker, "ANSWER_SECONDS", 0.5)
    proc.send_signal(signal.SIGSTOP)  # hung: alive, never answers
    try:
        with caplog.at_level(logging.WARNING, logger="ipt_fhir.store.index_worker"):
            started = time.monotonic()
            assert db._index_worker.extract(None) is None
            assert time.monotonic() - started < 5
        assert proc.wait(timeout=5) is not None  # killed, not left behind
        assert "did not answer" in caplog.text
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_caller_waits_for_another_callers_exchange_only_briefly(db, monkeypatch):
    from ipt_fhir.store import index_worker

    monkeypatch.setattr(index_worker, "TURN_SECONDS", 0.2)
    with db._index_worker._lock:  # another thread's exchange, taking long
        started = time.monotonic()
        assert db._index_worker.extract(None) is None
        assert time.monotonic() - started < 2
