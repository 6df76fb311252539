"""Concurrent writers: each request is its own all-or-nothing unit of work, even when SQLite commits
several of them together (group commit), and each sees only its own request's context."""
from __future__ import annotations

import contextvars
import re
import threading
from concurrent.futures import ThreadPoolExecutor

from ipt_fhir.fhir.outcome import FHIRError, bad_request
from ipt_fhir.store.database import Database
from ipt_fhir.store.ids import new_resource_id

WHO = contextvars.ContextVar("who", default=None)


def _patient(i: int) -> dict:
    return {"resourceType": "Patient", "identifier": [{"system": "urn:test", "value": str(i)}],
            "name": [{"family": f"Family{i}"}]}


def test_concurrent_creates_all_land_with_distinct_ids(client):
    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda i: client.post("/fhir/Patient", json=_patient(i)), range(64)))
    assert [r.status_code for r in responses] == [201] * 64
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 64
    found = client.get("/fhir/Patient", params={"_summary": "count"}).json()
    assert found["total"] == 64


def test_concurrent_updates_of_one_resource_without_if_match_all_land_in_turn(client):
    """No version given, no conflict: each update becomes the next version (PostgreSQL locks the row)."""
    pid = client.post("/fhir/Patient", json=_patient(0)).json()["id"]

    def update(i: int):
        return client.put(f"/fhir/Patient/{pid}", json={**_patient(0), "id": pid, "multipleBirthInteger": i})

    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(update, range(32)))
    assert [r.status_code for r in responses] == [200] * 32, [r.text for r in responses if r.status_code != 200][:1]
    assert sorted(int(r.json()["meta"]["versionId"]) for r in responses) == list(range(2, 34))
    assert client.get(f"/fhir/Patient/{pid}/_history").json()["total"] == 33


def test_concurrent_puts_that_create_one_new_id_all_land_in_turn(client):
    """The first creates it, the others update it, each the next version: as when it existed. (On
    PostgreSQL the losers' inserts met the winner's row and answered 409.)"""
    def put(i: int):
        body = {**_patient(0), "id": "race-new", "multipleBirthInteger": i}
        return client.put("/fhir/Patient/race-new", json=body)

    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(put, range(20)))
    assert sorted(r.status_code for r in responses) == [200] * 19 + [201], \
        [r.text for r in responses if r.status_code not in (200, 201)][:1]
    assert sorted(int(r.json()["meta"]["versionId"]) for r in responses) == list(range(1, 21))


def test_a_failing_write_among_concurrent_ones_takes_only_itself_down(client):
    """Invalid and stale-version writes fail alone; the valid writes that share their commit land."""
    base = client.post("/fhir/Patient", json=_patient(0)).json()
    client.put(f"/fhir/Patient/{base['id']}", json={**base, "active": True})  # now version 2

    def send(i: int):
        if i % 4 == 0:  # a stale If-Match: 412, checked inside the unit of work
            return client.put(f"/fhir/Patient/{base['id']}", json={**base, "active": False},
                              headers={"If-Match": 'W/"1"'})
        if i % 4 == 1:  # a conditional create that must find exactly one match
            return client.post("/fhir/Patient", json=_patient(1000 + i),
                               headers={"If-None-Exist": "identifier=urn:test|0"})
        return client.post("/fhir/Patient", json=_patient(i))

    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(send, range(64)))
    statuses = [r.status_code for r in responses]
    assert statuses[0::4] == [412] * 16
    assert statuses[1::4] == [200] * 16  # the existing match is returned, nothing created
    assert all(s == 201 for i, s in enumerate(statuses) if i % 4 >= 2)
    assert client.get(f"/fhir/Patient/{base['id']}").json()["meta"]["versionId"] == "2"
    assert client.get("/fhir/Patient", params={"_summary": "count"}).json()["total"] == 1 + 32


def _count(db: Database) -> int:
    with db.read() as conn:
        return conn.exec_driver_sql("SELECT count(*) FROM resource").scalar_one()


def _insert(conn, rid: str) -> None:  # noqa: ANN001
    conn.exec_driver_sql(
        "INSERT INTO resource (resource_type, id, version_id, last_updated, deleted, content) "
        "VALUES ('Basic', ?, 1, '2026-01-01 00:00:00.000000', 0, x'7b7d')" if conn.dialect.name == "sqlite" else
        "INSERT INTO resource (resource_type, id, version_id, last_updated, deleted, content) "
        "VALUES ('Basic', %s, 1, '2026-01-01T00:00:00Z', false, '\\x7b7d')", (rid,))


def test_run_write_rolls_back_exactly_the_failing_unit(database: Database):
    """Units that raise after writing leave nothing behind; their neighbours in the same commit stay."""
    start = threading.Barrier(24)

    def unit(i: int):
        def work(conn):  # noqa: ANN001
            _insert(conn, f"u{i}")
            if i % 3 == 0:
                raise bad_request(f"unit {i} refuses")
            return i
        start.wait()
        try:
            return database.run_write(work)
        except FHIRError as exc:
            return exc

    with ThreadPoolExecutor(24) as pool:
        results = list(pool.map(unit, range(24)))
    for i, result in enumerate(results):
        if i % 3 == 0:
            assert isinstance(result, FHIRError) and f"unit {i} refuses" in str(result.issues[0].diagnostics)
        else:
            assert result == i
    assert _count(database) == 16
    with database.read() as conn:
        ids = {r[0] for r in conn.exec_driver_sql("SELECT id FROM resource")}
    assert ids == {f"u{i}" for i in range(24) if i % 3}


def test_run_write_runs_each_unit_in_its_callers_context(database: Database):
    """A unit may run on another caller's thread; it must see its own caller's context variables
    (access token, audit collector), never the other caller's."""
    start = threading.Barrier(16)

    def unit(i: int):
        WHO.set(f"caller-{i}")
        start.wait()
        return database.run_write(lambda conn: WHO.get())

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(unit, range(16)))
    assert results == [f"caller-{i}" for i in range(16)]


def test_server_assigned_ids_are_time_ordered_uuids():
    ids = [new_resource_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", i) for i in ids)
    # Ordered by their millisecond prefix: later ids never sort before earlier milliseconds.
    prefixes = [i[:13] for i in ids]
    assert prefixes == sorted(prefixes)


def test_sqlite_units_queued_behind_a_writer_share_one_commit(tmp_path, sqlite_template):
    """Deterministic group commit: units queued while the writer lock is held run together, each in
    its own savepoint."""
    import shutil

    shutil.copy(sqlite_template, tmp_path / "db.sqlite")
    database = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    commits = []
    import sqlalchemy as sa

    # Commits of units only: the checkpointer's own WAL-restart write (checkpoint.py) may come in between.
    sa.event.listen(database._write_engine, "commit", lambda conn: commits.append(1)
                    if threading.current_thread().name != "ipt-fhir-sqlite-checkpoint" else None)

    def work(i: int):
        def unit(conn):  # noqa: ANN001
            _insert(conn, f"q{i}")
            if i == 3:
                raise bad_request("unit 3 refuses")
            return i
        return unit

    with database._writer:  # an ongoing write: everything submitted now queues
        pool = ThreadPoolExecutor(8)
        futures = [pool.submit(database.run_write, work(i)) for i in range(8)]
        while len(database._group._queue) < 8:
            threading.Event().wait(0.005)
    results = [f.exception() or f.result() for f in futures]
    pool.shutdown()
    assert isinstance(results[3], FHIRError)
    assert [r for i, r in enumerate(results) if i != 3] == [0, 1, 2, 4, 5, 6, 7]
    assert len(commits) == 1
    assert _count(database) == 7
    database.dispose()


def test_sqlite_wal_is_checkpointed_in_the_background(tmp_path, sqlite_template):
    """Commits never wait for a checkpoint of their own below the backstop: a background thread moves
    the WAL into the database file, and stops with the database."""
    import os
    import shutil
    import time

    path = tmp_path / "db.sqlite"
    shutil.copy(sqlite_template, path)
    database = Database(f"sqlite:///{path}")
    before = os.path.getsize(path)
    for i in range(200):  # a few hundred WAL pages, far below the 10,000-page backstop
        database.run_write(lambda conn, i=i: _insert(conn, f"c{i}-{'x' * 40}"))
    deadline = time.monotonic() + 10
    while os.path.getsize(path) <= before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert os.path.getsize(path) > before, "the WAL was not checkpointed into the database file"
    thread = database._checkpointer._thread
    assert thread is not None and thread.is_alive()
    database.dispose()
    assert not thread.is_alive()
    assert _count(Database(f"sqlite:///{path}")) == 200
