"""Fresh, unmigrated databases for tests that migrate, measure or run servers of their own (the shared
per-process test database is migrated once and truncated between tests; these tests must not touch it)."""
from __future__ import annotations

import os
import uuid

import pytest
import sqlalchemy as sa


def _postgres_base() -> str:
    base = os.environ.get("IPT_FHIR_TEST_POSTGRES_URL")
    if not base:
        if os.environ.get("CI"):
            pytest.fail("IPT_FHIR_TEST_POSTGRES_URL is not set: CI must test PostgreSQL (run scripts/test)")
        pytest.skip("IPT_FHIR_TEST_POSTGRES_URL not set (scripts/test starts PostgreSQL and sets it)")
    return base


@pytest.fixture
def fresh_postgres_url():
    base = _postgres_base()
    name = f"ipt_fhir_prod_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh.db'}"
    return request.getfixturevalue("fresh_postgres_url")
