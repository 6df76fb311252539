"""Fresh, unmigrated databases for tests that migrate, measure or run servers of their own (the shared
per-process test database is migrated once and truncated between tests; these tests must not touch it)."""
from __future__ import annotations

import pytest

from tests.pg import scratch_database


@pytest.fixture
def fresh_postgres_url():
    with scratch_database("ipt_fhir_prod") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh.db'}"
    return request.getfixturevalue("fresh_postgres_url")
