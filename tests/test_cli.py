"""The `ipt-fhir` command: serve migrates the embedded database itself and refuses an out-of-date
PostgreSQL schema; db upgrade/downgrade/current; db reindex rebuilds the IPT progress rows."""
from __future__ import annotations

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from ipt_fhir import cli
from ipt_fhir.settings import get_settings
from ipt_fhir.store import migrate


@pytest.fixture
def run(monkeypatch):
    served: list[dict] = []
    monkeypatch.setattr("uvicorn.run", lambda *a, **kw: served.append(kw))

    def invoke(url: str, *args: str):
        monkeypatch.setenv("IPT_FHIR_DATABASE_URL", url)
        get_settings.cache_clear()
        try:
            return CliRunner().invoke(cli.app, list(args)), served
        finally:
            get_settings.cache_clear()

    return invoke


def test_serve_on_embedded_sqlite_migrates_the_database_itself(run, tmp_path):
    url = f"sqlite:///{tmp_path / 'new.db'}"
    result, served = run(url, "serve", "--port", "8999")
    assert result.exit_code == 0, result.output
    assert migrate.is_current(url)
    assert served and served[0]["port"] == 8999
    assert "http://127.0.0.1:8999/fhir" in result.output


def test_serve_on_postgresql_refuses_an_out_of_date_schema_and_names_the_command(run, postgres_url, tmp_path,
                                                                                  monkeypatch):
    import json

    from cryptography.hazmat.primitives.asymmetric import rsa
    from jwt.algorithms import RSAAlgorithm

    # PostgreSQL never runs without authorization: give it a real (if unused) SMART configuration.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [json.loads(RSAAlgorithm.to_jwk(key.public_key()))]}))
    for name, value in (("AUTH", "smart"), ("JWKS", str(jwks)), ("JWT_ISSUER", "https://issuer.example"),
                        ("JWT_AUDIENCE", "https://ipt.example/fhir")):
        monkeypatch.setenv(f"IPT_FHIR_{name}", value)
    migrate.downgrade(postgres_url, "base")
    try:
        result, served = run(postgres_url, "serve", "--host", "127.0.0.1")
        assert result.exit_code != 0 and not served
        assert "ipt-fhir db upgrade" in result.output
    finally:
        migrate.upgrade(postgres_url)


def test_db_commands_upgrade_downgrade_and_report_current(run, tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    result, _ = run(url, "db", "current")
    assert result.exit_code == 1 and "no database at" in result.output  # and none made for the asking
    assert run(url, "db", "upgrade")[0].exit_code == 0
    result, _ = run(url, "db", "current")
    assert result.exit_code == 0 and "current" in result.output
    assert run(url, "db", "downgrade", "base")[0].exit_code == 0
    engine = sa.create_engine(url)
    assert "resource" not in sa.inspect(engine).get_table_names()
    engine.dispose()


def test_reindex_rebuilds_ipt_progress_rows_that_are_wrong_or_missing(run, database_url, database, settings):
    """Rows an older version built may hold another patient's entries; a lost row is rebuilt too."""
    from fastapi.testclient import TestClient

    from ipt_fhir.app import create_app
    from ipt_fhir.store import ipt_progress
    from tests.domain.world import World, phq9
    from tests.ipt.helpers import load_world, progress, put

    with TestClient(create_app(settings, database)) as client:
        load_world(client, World(sessions=12))
        assert put(client, phq9("o1", 18, "2025-01-06T09:00:00Z")).status_code == 201
        put(client, {**World(sessions=12).resources[0], "id": "plan2"})  # a second IPT plan, same patient
        expected = {plan: progress(client, plan) for plan in ("plan", "plan2")}
        with database.write() as conn:
            row = ipt_progress.get(conn, "plan")
            row["phq9"]["Observation/theirs"] = {"date": "2025-01-13T09:00:00Z", "value": 3}  # another patient's
            row["sessions"]["Encounter/theirs"] = {"number": 2, "status": "finished", "start": "2025-01-13"}
            ipt_progress.put(conn, "plan", "Patient/p1", row)
            ipt_progress.delete(conn, "plan2")
            ipt_progress.put(conn, "gone", "Patient/p1", row)  # a row whose plan no longer exists
        corrupted = progress(client, "plan")
        assert corrupted["phq9Latest"]["value"] == 3 and corrupted["sessionsAttended"] == 1

        result, _ = run(database_url, "db", "reindex", "--no-search")
        assert result.exit_code == 0, result.output
        assert "rebuilt the progress of 2 IPT care plans" in result.output
        assert {plan: progress(client, plan) for plan in ("plan", "plan2")} == expected
        with database.read() as conn:
            assert ipt_progress.get(conn, "plan2") is not None
            assert ipt_progress.get(conn, "gone") is None


def test_a_command_reading_a_database_that_is_not_there_names_the_path_and_creates_nothing(run, tmp_path):
    missing = tmp_path / "typo" / "ipt-fhir.db"
    for args in (("db", "current"), ("db", "reindex"), ("export", str(tmp_path / "out"))):
        result, _ = run(f"sqlite:///{missing}", *args)
        assert result.exit_code == 1, (args, result.output)
        assert f"no database at {missing}" in result.output
        assert not missing.exists() and not missing.parent.exists()


@pytest.mark.parametrize("args, message", [
    (("export", "{tmp}/out", "--database-url", "bogus://x"), "the database URL cannot be used"),
    (("export", "{tmp}/out", "--url", "http://127.0.0.1:1/fhir"), "the server cannot be reached"),
])
def test_an_environment_error_is_one_line_and_exit_code_1_not_a_traceback(tmp_path, args, message):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "ipt_fhir.cli", *(a.format(tmp=tmp_path) for a in args)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith(f"ipt-fhir: {message}") and "Traceback" not in proc.stderr, proc.stderr


def test_a_revision_that_does_not_exist_is_one_line_not_a_traceback(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "IPT_FHIR_DATABASE_URL": f"sqlite:///{tmp_path / 'rev.db'}"}
    subprocess.run([sys.executable, "-m", "ipt_fhir.cli", "db", "upgrade"], env=env, check=True, capture_output=True)
    proc = subprocess.run([sys.executable, "-m", "ipt_fhir.cli", "db", "downgrade", "bogus_rev"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("ipt-fhir: the schema cannot be moved") and "bogus_rev" in proc.stderr
