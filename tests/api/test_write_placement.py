"""Writes by id run inline on the event loop on SQLite while this process's writer is idle, and in the
thread pool otherwise (api/write_placement.py): a write waiting for the writer never stops the loop."""
from __future__ import annotations

import asyncio
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from ipt_fhir.api.write_placement import run_write
from ipt_fhir.app import create_app
from ipt_fhir.settings import Settings
from ipt_fhir.store.database import Database


@pytest.fixture
def sqlite_db(tmp_path, sqlite_template):
    path = tmp_path / "db.sqlite"
    shutil.copy(sqlite_template, path)
    db = Database(f"sqlite:///{path}")
    yield db
    db.dispose()


def _thread_of_write(db: Database) -> threading.Thread:
    async def main() -> threading.Thread:
        return await run_write(db, threading.current_thread)
    return asyncio.run(main())


def test_inline_on_sqlite_while_the_writer_is_idle(sqlite_db):
    assert _thread_of_write(sqlite_db) is threading.current_thread()


def test_thread_pool_while_the_writer_is_taken(sqlite_db):
    with sqlite_db._writer:
        assert _thread_of_write(sqlite_db) is not threading.current_thread()


def test_thread_pool_on_postgresql():
    db = Database("postgresql+psycopg://nobody@127.0.0.1:1/none")  # never connected
    assert _thread_of_write(db) is not threading.current_thread()


def test_a_create_waiting_for_the_writer_leaves_the_loop_serving(tmp_path, sqlite_db):
    app = create_app(Settings(database_url=sqlite_db.url, bulk_dir=str(tmp_path / "bulk")), sqlite_db)
    with TestClient(app, base_url="http://testserver") as client, ThreadPoolExecutor(2) as pool:
        assert client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"}).status_code == 201
        sqlite_db._writer.acquire()  # a long write elsewhere in the process, e.g. a transaction Bundle
        try:
            create = pool.submit(client.post, "/fhir/Patient", json={"resourceType": "Patient"})
            read = pool.submit(client.get, "/fhir/Patient/p1")
            assert read.result(timeout=10).status_code == 200  # served while the create waits
            assert not create.done()
        finally:
            sqlite_db._writer.release()
        assert create.result(timeout=10).status_code == 201
