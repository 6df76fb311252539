"""Shared fixtures: every test that takes `database` or `client` runs on SQLite and on PostgreSQL.

PostgreSQL comes from IPT_FHIR_TEST_POSTGRES_URL (scripts/test starts one). Each xdist worker gets its
own database, migrated once with Alembic; tests start from empty tables (TRUNCATE on PostgreSQL, a copy
of a migrated template file on SQLite).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ipt_fhir.app import create_app
from ipt_fhir.settings import Settings
from ipt_fhir.store import migrate
from ipt_fhir.store.database import Database
from tests.pg import scratch_database

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURES = SHARED / "fixtures"
TEST_PROXY = "testclient"  # TestClient's peer address


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_url(worker_id: str):
    # One database per test process (pid: several test runs may share one server during development).
    with scratch_database("ipt_fhir_test", f"ipt_fhir_test_{worker_id}_{os.getpid()}") as url:
        migrate.upgrade(url)
        yield url


def _truncate_all(db: Database) -> None:
    with db.engine.begin() as conn:
        tables = [r[0] for r in conn.exec_driver_sql(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename <> 'alembic_version'")]
        if tables:
            conn.exec_driver_sql(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        path = tmp_path / "ipt-fhir.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def database(database_url: str):
    db = Database(database_url)
    if db.dialect == "postgresql":
        _truncate_all(db)
    yield db
    db.dispose()


@pytest.fixture
def settings(database_url: str, tmp_path) -> Settings:
    # The test client's peer name stands for a trusted reverse proxy, so tests may send X-Forwarded-*
    # (tests/api/test_proxy_headers.py covers peers that are not trusted).
    return Settings(database_url=database_url, bulk_dir=str(tmp_path / "bulk"), forwarded_allow_ips=TEST_PROXY)


@pytest.fixture
def app(settings: Settings, database: Database):
    return create_app(settings, database)


@pytest.fixture
def client(app) -> TestClient:
    with TestClient(app, base_url="http://testserver") as c:
        yield c
