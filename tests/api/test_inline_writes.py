"""Small writes on SQLite run on the event loop when the writer is free, and never meet a disk sync there.

The sync that could reach them is the one SQLite makes when a write transaction starts the WAL over
after a checkpoint copied all of it. The checkpointer prevents that: after each of its rounds the WAL
holds a frame no checkpoint has copied, and event-loop writes are paused while that is not so
(store/checkpoint.py). These tests read the WAL index (the -shm file) to check exactly that.
"""
from __future__ import annotations

import itertools
import shutil
import struct
import threading
from pathlib import Path

import pytest

from ipt_fhir.services import write_hooks
from ipt_fhir.services.resources import ResourceService
from ipt_fhir.store import pending_index
from ipt_fhir.store.database import Database


def _wal_index(db_path: Path) -> tuple[int, int]:
    """(frames in the WAL, frames a checkpoint copied into the database file), from the WAL index: the
    header's mxFrame at offset 16 and the checkpoint info's nBackfill at offset 96, native byte order."""
    data = (db_path.parent / (db_path.name + "-shm")).read_bytes()[:100]
    return struct.unpack_from("=I", data, 16)[0], struct.unpack_from("=I", data, 96)[0]


_keys = itertools.count()


def _write(database: Database, n: int) -> None:
    for _ in range(n):
        database.run_write(lambda conn, key=f"k{next(_keys)}": conn.exec_driver_sql(
            "INSERT INTO conditional_create_key (resource_type, criteria_hash, resource_id) VALUES (?, ?, ?)",
            ("Patient", key, "x")))


def _manual_rounds(database: Database) -> None:
    """No checkpointer thread: rounds run only when a test calls run_round(). A thread already running
    (the app's start-up writes planner statistics) is stopped, wake() starts no other, and the stop is
    then cleared, since a stopped checkpointer's rounds would not move pending rows."""
    checkpointer = database._checkpointer
    checkpointer.stop()
    checkpointer.wake = lambda: None
    checkpointer._stopped.clear()


@pytest.fixture
def sqlite_db(tmp_path, sqlite_template):
    path = tmp_path / "db.sqlite"
    shutil.copy(sqlite_template, path)
    database = Database(f"sqlite:///{path}")
    _manual_rounds(database)
    yield database, path
    database.dispose()


def test_event_loop_writes_wait_for_the_first_checkpoint_round(sqlite_db):
    database, path = sqlite_db
    assert not database.try_inline_writer()  # a fresh WAL: the first write would sync its header
    _write(database, 1)
    database._checkpointer.run_round()
    assert database.try_inline_writer()
    database.release_inline_writer()


def test_after_every_round_the_wal_holds_an_uncopied_frame(sqlite_db):
    database, path = sqlite_db
    _write(database, 1)
    for _ in range(3):
        _write(database, 50)
        database._checkpointer.run_round()
        frames, copied = _wal_index(path)
        assert frames > copied, "the next write would start the WAL over and sync on the event loop"
    # ... and the round restarted the WAL itself: it holds only the round's own frame, not every write.
    assert frames == 1


def test_event_loop_writes_go_on_while_a_round_copies_the_bulk_of_the_wal(sqlite_db, monkeypatch):
    """Only the round's last checkpoint pass, which copies what arrived during the one before, runs with
    event-loop writes paused; a loop write made during an earlier pass is copied by a later one. Unpaused
    passes go on while one still copied more than SETTLED_FRAMES new frames."""
    from ipt_fhir.store import checkpoint

    database, path = sqlite_db
    _write(database, 1)
    database._checkpointer.run_round()
    _write(database, 2 * checkpoint.SETTLED_FRAMES)  # a commit each: a first pass copies more than that
    passes: list[bool] = []  # whether event-loop writes were paused, per pass
    original = checkpoint.Checkpointer._checkpoint

    def noting_pass(self):  # noqa: ANN001, ANN202
        passes.append(database.inline_writes_paused)
        if len(passes) == 1:  # a loop write, during the first pass
            assert database.try_inline_writer()
            try:
                _write(database, 1)
            finally:
                database.release_inline_writer()
        return original(self)

    monkeypatch.setattr(checkpoint.Checkpointer, "_checkpoint", noting_pass)
    database._checkpointer.run_round()
    # the first pass copies the thousand writes, the second only the loop write's frames: settled
    assert passes == [False, False, True]
    frames, copied = _wal_index(path)
    assert frames == 1 and copied == 0  # all copied, the WAL restarted by the round's own frame


def test_a_round_without_its_checkpoint_leaves_the_wal_and_loop_writes_alone(sqlite_db):
    """Rounds only checkpoint every CHECKPOINT_EVERY_ROUNDS-th time; the others move pending rows only."""
    database, path = sqlite_db
    _write(database, 1)
    database._checkpointer.run_round()
    _write(database, 20)
    ResourceService(database).create("Patient", {"resourceType": "Patient", "gender": "female"})
    assert database.fetch_one(pending_index.ANY_PENDING_SQL, ()) is not None
    frames, copied = _wal_index(path)
    database._checkpointer.run_round(checkpoint=False)
    assert database.fetch_one(pending_index.ANY_PENDING_SQL, ()) is None
    moved_frames, moved_copied = _wal_index(path)
    assert moved_frames > frames and moved_copied == copied  # the move wrote; nothing was checkpointed
    assert database.try_inline_writer()
    database.release_inline_writer()


def test_the_wal_is_left_alone_when_a_round_could_not_copy_everything(sqlite_db):
    """A reader in the middle of a read keeps the frames it may still need: nothing to restart then."""
    database, path = sqlite_db
    _write(database, 20)
    reader = database.engine.raw_connection()
    cursor = reader.cursor()
    cursor.execute("BEGIN")
    cursor.execute("SELECT count(*) FROM conditional_create_key").fetchone()
    _write(database, 20)
    database._checkpointer.run_round()
    frames, copied = _wal_index(path)
    assert frames > copied and frames > 1
    assert database.try_inline_writer()
    database.release_inline_writer()
    cursor.execute("COMMIT")
    reader.close()


def test_no_event_loop_write_while_a_thread_writes_or_a_round_runs(sqlite_db):
    database, _ = sqlite_db
    _write(database, 1)
    database._checkpointer.run_round()
    held, release = threading.Event(), threading.Event()

    def thread_write(conn):  # noqa: ANN001
        held.set()
        release.wait(5)

    writer = threading.Thread(target=database.run_write, args=(thread_write,))
    writer.start()
    held.wait(5)
    assert not database.try_inline_writer()  # it would have to wait for the thread's commit
    release.set()
    writer.join()

    database.pause_inline_writes()
    assert not database.try_inline_writer()
    database.resume_inline_writes()
    assert database.try_inline_writer()
    database.release_inline_writer()


def test_an_event_loop_write_never_runs_units_other_threads_queued(sqlite_db):
    """Group commit hands queued units to whoever holds the writer; on the event loop that could be a
    large write sent to a thread because it is large. The loop runs its own units only."""
    import time

    from ipt_fhir.store.group_commit import Unit

    database, _ = sqlite_db
    _write(database, 1)
    database._checkpointer.run_round()
    ran_on: list[str] = []

    def note(conn) -> None:  # noqa: ANN001
        ran_on.append(threading.current_thread().name)

    assert database.try_inline_writer()
    queued = threading.Thread(target=database.run_write, args=(note,), name="queued-writer")
    queued.start()
    while not database._group._queue:  # its unit waits for the writer
        time.sleep(0.005)
    database.run_units_held([Unit(note)])
    database.release_inline_writer()
    queued.join(5)
    assert ran_on == [threading.current_thread().name, "queued-writer"]


def _commits_of(database: Database, n_creates: int, client_app) -> tuple[list[int], int]:  # noqa: ANN001
    """Send `n_creates` small creates at once (one turn of the event loop); their statuses and commits."""
    import asyncio

    import httpx

    async def send() -> list[int]:
        transport = httpx.ASGITransport(app=client_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            responses = await asyncio.gather(*(
                http.post("/fhir/Patient", json={"resourceType": "Patient", "active": i % 2 == 0,
                                                 **({"gender": "nonsense"} if i == 2 else {})})
                for i in range(n_creates)))
        return [r.status_code for r in responses]

    before = database.commits
    statuses = asyncio.run(send())
    return statuses, database.commits - before


@pytest.fixture
def loop_writes(client):
    """The SQLite database of `client` after a first write and round: event-loop writes allowed."""
    database = client.app.state.database
    if database.dialect != "sqlite":
        pytest.skip("SQLite only")
    _manual_rounds(database)
    assert client.post("/fhir/Patient", json={"resourceType": "Patient"}).status_code == 201
    database._checkpointer.run_round()
    return database


def test_small_writes_of_one_loop_turn_share_a_commit(client, loop_writes):
    database = loop_writes
    statuses, commits = _commits_of(database, 6, client.app)
    assert statuses == [201, 201, 400, 201, 201, 201]  # the invalid one fails validation, before the store
    assert commits == 1
    listed = client.get("/fhir/Patient", params={"_summary": "count"}).json()["total"]
    assert listed == 6


def test_a_failing_unit_of_a_shared_commit_rolls_back_alone(client, loop_writes, monkeypatch):
    """One request's unit of work raising (here a write hook's rule) leaves the others of its commit."""
    from ipt_fhir.fhir.outcome import FHIRError, error

    database = loop_writes

    class RejectInactive:
        def check(self, conn, change) -> list:  # noqa: ANN001
            if change.resource.get("active") is False:
                raise FHIRError(422, [error("business-rule", "inactive", "Patient.active")])
            return []

        def after_write(self, conn, change) -> None:  # noqa: ANN001
            pass

    monkeypatch.setattr(write_hooks, "_hooks", [*write_hooks.registered(), RejectInactive()])
    statuses, commits = _commits_of(database, 5, client.app)
    assert statuses == [201, 422, 400, 422, 201]
    assert commits == 1  # the two that stored share it
    assert client.get("/fhir/Patient", params={"_summary": "count"}).json()["total"] == 3


def test_small_writes_go_to_a_thread_while_loop_writes_are_paused(client, loop_writes, monkeypatch):
    database = loop_writes
    hook = _ThreadOfWrite()
    monkeypatch.setattr(write_hooks, "_hooks", [*write_hooks.registered(), hook])
    database.pause_inline_writes()
    statuses, _ = _commits_of(database, 4, client.app)
    database.resume_inline_writes()
    assert statuses == [201, 201, 400, 201]
    assert len(hook.threads) == 3 and all(t.startswith("AnyIO worker") for t in hook.threads)
    assert client.get("/fhir/Patient", params={"_summary": "count"}).json()["total"] == 4


class _ThreadOfWrite:
    """A write hook noting the thread each unit of work ran on."""

    def __init__(self) -> None:
        self.threads: list[str] = []

    def check(self, conn, change) -> list:  # noqa: ANN001
        return []

    def after_write(self, conn, change) -> None:  # noqa: ANN001
        self.threads.append(threading.current_thread().name)


def test_small_creates_and_updates_run_on_the_event_loop_and_others_in_a_thread(client, monkeypatch):
    database = client.app.state.database
    if database.dialect != "sqlite":
        pytest.skip("SQLite only")
    _manual_rounds(database)
    hook = _ThreadOfWrite()
    monkeypatch.setattr(write_hooks, "_hooks", [*write_hooks.registered(), hook])
    assert client.post("/fhir/Patient", json={"resourceType": "Patient"}).status_code == 201
    database._checkpointer.run_round()
    small = client.post("/fhir/Patient", json={"resourceType": "Patient", "active": True})
    large = client.post("/fhir/Patient", json={"resourceType": "Patient", "name": [{"text": "x" * 40_000}]})
    updated = client.put(f"/fhir/Patient/{small.json()['id']}", json={**small.json(), "active": False})
    # a patch's cost follows the stored resource's size, not its body's
    patched = client.patch(f"/fhir/Patient/{small.json()['id']}", headers={"Content-Type": "application/json-patch+json"},
                           content=b'[{"op": "add", "path": "/gender", "value": "female"}]')
    assert [r.status_code for r in (small, large, updated, patched)] == [201, 201, 200, 200]
    _, small_thread, large_thread, update_thread, patch_thread = hook.threads
    assert not small_thread.startswith("AnyIO worker") and update_thread == small_thread  # the event loop's
    assert large_thread.startswith("AnyIO worker") and patch_thread.startswith("AnyIO worker")


def test_postgresql_writes_never_run_on_the_event_loop(client, monkeypatch):
    """A write there is network round trips to the server: even a small create runs in a worker thread."""
    database = client.app.state.database
    if database.dialect == "sqlite":
        pytest.skip("PostgreSQL only")
    assert database.loop_commit is None
    hook = _ThreadOfWrite()
    monkeypatch.setattr(write_hooks, "_hooks", [*write_hooks.registered(), hook])
    small = client.post("/fhir/Patient", json={"resourceType": "Patient", "active": True})
    updated = client.put(f"/fhir/Patient/{small.json()['id']}", json={**small.json(), "active": False})
    assert [small.status_code, updated.status_code] == [201, 200]
    assert len(hook.threads) == 2 and all(name.startswith("AnyIO worker") for name in hook.threads), hook.threads


def _stat_rows(path: Path) -> dict[str, str]:
    import sqlite3

    with sqlite3.connect(path) as conn:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").fetchone() is None:
            return {}
        return {idx: stat for _tbl, idx, stat in conn.execute("SELECT tbl, idx, stat FROM sqlite_stat1")}


def test_the_server_gathers_planner_statistics_at_startup(tmp_path, sqlite_template):
    """Without sqlite_stat1 SQLite plans whole-type searches badly (store/statistics.py)."""
    from fastapi.testclient import TestClient

    from ipt_fhir.app import create_app
    from ipt_fhir.settings import Settings

    path = tmp_path / "db.sqlite"
    shutil.copy(sqlite_template, path)
    url = f"sqlite:///{path}"
    writer = Database(url)
    _manual_rounds(writer)
    _write(writer, 5)  # ANALYZE leaves out empty tables
    writer.dispose()
    assert _stat_rows(path) == {}
    with TestClient(create_app(Settings(database_url=url, bulk_dir=str(tmp_path / "bulk")), Database(url))):
        pass
    assert "sqlite_autoindex_conditional_create_key_1" in _stat_rows(path)


def test_checkpoint_rounds_refresh_the_statistics_after_writes(sqlite_db, monkeypatch):
    from ipt_fhir.store import statistics

    database, path = sqlite_db
    _write(database, 5)
    database._checkpointer.run_round()  # the first round gathers them
    before = _stat_rows(path)
    assert "sqlite_autoindex_conditional_create_key_1" in before
    monkeypatch.setattr(statistics, "REFRESH_AFTER_WRITES", 50)
    monkeypatch.setattr(statistics, "REFRESH_AT_MOST_EVERY", 0.0)
    _write(database, 40)
    database._checkpointer.run_round()
    assert _stat_rows(path) == before  # not due yet
    _write(database, 20)
    database._checkpointer.run_round()
    assert _stat_rows(path)["sqlite_autoindex_conditional_create_key_1"] != \
        before["sqlite_autoindex_conditional_create_key_1"]  # the row count it estimates grew
