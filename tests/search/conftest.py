from __future__ import annotations

import json
import shutil
from typing import Iterator

import pytest
from fastapi.testclient import TestClient

from ipt_fhir.app import create_app
from ipt_fhir.services.search import search
from ipt_fhir.settings import Settings
from ipt_fhir.store.database import Database

from .harness import put

BASE = "http://testserver/fhir"


class Engine:
    """Search straight through the service (no HTTP), on the parametrised SQLite/PostgreSQL database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def put(self, resource: dict) -> dict:
        return put(self.db, resource)

    def bundle(self, rt: str | None, query: list[tuple[str, str]] | str, **kw) -> dict:
        if isinstance(query, str):
            query = [tuple(p.split("=", 1)) for p in query.split("&") if p]  # type: ignore[misc]
        return json.loads(search(self.db, rt, list(query), base_url=BASE, request_url=BASE + "/x", **kw))

    def ids(self, rt: str, query: list[tuple[str, str]] | str, **kw) -> set[str]:
        b = self.bundle(rt, query, **kw)
        return {e["resource"]["id"] for e in b.get("entry", []) if e["search"]["mode"] == "match"}


@pytest.fixture
def engine(database: Database) -> Engine:
    return Engine(database)


@pytest.fixture
def sqlite_url(tmp_path, sqlite_template) -> str:
    """A fresh SQLite file database at head, for tests of what only SQLite does (the pending index)."""
    path = tmp_path / "db.sqlite"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def quiet_sqlite_db(sqlite_url, request) -> Iterator[Database]:
    """A Database on `sqlite_url` without background rounds, so that rows stay pending until the test
    moves them; with an index worker when the test module sets INDEX_WORKER = True."""
    database = Database(sqlite_url, index_worker=getattr(request.module, "INDEX_WORKER", False))
    database._checkpointer._stopped.set()
    yield database
    database.dispose()


@pytest.fixture
def quiet_sqlite_client(quiet_sqlite_db, sqlite_url, tmp_path) -> Iterator[TestClient]:
    app = create_app(Settings(database_url=sqlite_url, bulk_dir=str(tmp_path / "bulk")), quiet_sqlite_db)
    with TestClient(app, base_url="http://testserver") as c:
        yield c
