"""Scratch PostgreSQL databases for tests, on the server of IPT_FHIR_TEST_POSTGRES_URL (scripts/test
starts one). Without it the test is skipped locally and fails in CI, which must test PostgreSQL."""
from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from typing import Iterator

import pytest
import sqlalchemy as sa


def postgres_base() -> str:
    base = os.environ.get("IPT_FHIR_TEST_POSTGRES_URL")
    if not base:
        if os.environ.get("CI"):
            pytest.fail("IPT_FHIR_TEST_POSTGRES_URL is not set: CI must test PostgreSQL (run scripts/test)")
        pytest.skip("IPT_FHIR_TEST_POSTGRES_URL not set (scripts/test starts PostgreSQL and sets it)")
    return base


@contextmanager
def scratch_database(prefix: str, name: str | None = None) -> Iterator[str]:
    """An empty database (unique name unless given), dropped afterwards; yields its URL."""
    base = postgres_base()
    name = name or f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
