"""`ipt-fhir import` straight into a database: a process killed mid-import leaves whole batches only,
and a rerun completes without duplicates."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa

from ipt_fhir.store.search_tables import INDEX_TABLES
from tests.bulk.conftest import NDJSON_FILES
from tests.transactions.conftest import SYNTHEA_BUNDLES


INDEX_TABLE_NAMES = [t.name for t in INDEX_TABLES.values()]


def _cli(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ipt_fhir.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, **(env or {})})


# The server's own conformance resources, which an import stores first (services/ipt/publish.py): not
# the import's, so not counted.
OWN = "resource_type NOT IN ('StructureDefinition', 'CodeSystem', 'ValueSet', 'PlanDefinition', 'OperationDefinition')"


def _counts(url: str) -> tuple[int, int, int, int]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        resources = conn.exec_driver_sql(f"SELECT count(*) FROM resource WHERE {OWN}").scalar_one()
        history = conn.exec_driver_sql(f"SELECT count(*) FROM resource_history WHERE {OWN}").scalar_one()
        # every Synthea resource has index rows: all current resources have them exactly when index and
        # resource were written together
        indexed = conn.exec_driver_sql("SELECT count(*) FROM (" + " UNION ".join(
            f"SELECT resource_type, resource_id FROM {t} WHERE {OWN}" for t in INDEX_TABLE_NAMES) + ") AS x").scalar_one()
        orphans = conn.exec_driver_sql(
            "SELECT count(*) FROM resource r WHERE NOT EXISTS (SELECT 1 FROM resource_history h "
            "WHERE h.resource_type = r.resource_type AND h.id = r.id AND h.version_id = r.version_id)").scalar_one()
    engine.dispose()
    return resources, history, indexed, orphans


def _children(pid: int) -> list[int]:
    from pathlib import Path

    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _parent(p) == pid]


def _parent(proc_dir) -> int | None:  # noqa: ANN001
    try:
        return int((proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for init to reap it has ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_killed_import_leaves_whole_batches_and_a_rerun_completes(tmp_path):
    url = f"sqlite:///{tmp_path / 'kill.db'}"
    total = 7160
    proc = _cli("import", *map(str, NDJSON_FILES), "--database-url", url, "--batch", "50")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        time.sleep(0.3)
        try:
            if _counts(url)[0] >= 100:
                break
        except sa.exc.OperationalError:  # schema not there yet
            continue
    workers = _children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resources, history, indexed, orphans = _counts(url)
    assert 0 < resources < total, "the import was not interrupted (machine too slow or too fast)"
    assert resources == history == indexed and orphans == 0
    assert len(workers) >= 2  # the lines were prepared by worker processes...
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in workers)  # ...which ended with the killed importer

    rerun = _cli("import", *map(str, NDJSON_FILES), "--database-url", url)
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err.decode()[-3000:]
    resources, history, indexed, orphans = _counts(url)
    assert resources == history == indexed == total and orphans == 0


def test_dry_run_validates_without_writing_and_failures_exit_non_zero(tmp_path):
    url = f"sqlite:///{tmp_path / 'dry.db'}"
    bad = tmp_path / "bad.ndjson"
    bad.write_text('{"resourceType": "Patient", "id": "x", "gender": "nope"}\n')
    proc = _cli("import", str(SYNTHEA_BUNDLES[0]), str(NDJSON_FILES[0]), str(bad), "--database-url", url, "--dry-run")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1
    text = err.decode()
    assert "bad.ndjson" in text and "line 1" in text and "validated (dry run)" in text
    assert _counts(url)[0] == 0


def test_bundles_and_ndjson_import_then_export(tmp_path):
    url = f"sqlite:///{tmp_path / 'both.db'}"
    proc = _cli("import", str(SYNTHEA_BUNDLES[0]), str(NDJSON_FILES[0]), "--database-url", url)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-3000:]
    assert "total" in err.decode()
    proc = _cli("export", str(tmp_path / "out"), "--database-url", url, "--type", "Patient,AllergyIntolerance")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-3000:]
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"Patient.ndjson", "AllergyIntolerance.ndjson"}


def test_dry_run_refuses_what_the_import_would_refuse_entry_by_entry(tmp_path):
    """The dry run applies the checks a real import applies to each entry, the Bundle's own elements
    too (an unknown one in an entry), and names every failing entry (a real import stops at the first)."""
    url = f"sqlite:///{tmp_path / 'dry.db'}"
    patient = {"resourceType": "Patient", "name": [{"family": "Dry"}]}
    bundle = tmp_path / "odd.json"
    bundle.write_text(json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": patient, "request": {"method": "POST", "url": "Patient"}},
        {"resource": patient, "request": {"method": "POST", "url": "Patient"}, "bogus": 1},
        {"resource": {**patient, "gender": "nope"}, "request": {"method": "POST", "url": "Patient"}}]}))
    proc = _cli("import", str(bundle), "--database-url", url, "--dry-run")
    _, err = proc.communicate(timeout=300)
    text = err.decode()
    assert proc.returncode == 1, text
    assert "entry 1: 400: " in text and "bogus" in text and "entry 2: 400: " in text and "entry 0" not in text
    assert "Bundle.entry[1]: " not in text and "(400," not in text  # each entry named once, no repr
    assert _counts(url)[0] == 0


@pytest.mark.parametrize("dry_run", [True, False])
def test_a_bundle_the_import_cannot_process_is_refused_with_or_without_dry_run(tmp_path, dry_run):
    """The dry run opens a Bundle as the import does (BundleService.entry_errors): a collection is refused
    whole by both, not checked entry by entry."""
    url = f"sqlite:///{tmp_path / 'dry.db'}"
    bundle = tmp_path / "collection.json"
    bundle.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}}]}))
    proc = _cli("import", str(bundle), "--database-url", url, *(["--dry-run"] if dry_run else []))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1 and "Bundle.type must be 'batch' or 'transaction'" in err.decode(), err.decode()
    assert "entry 0" not in err.decode() and "entry[0]" not in err.decode()  # refused whole
    assert _counts(url)[0] == 0


def test_an_unreadable_file_is_reported_by_name_and_the_other_files_are_imported(tmp_path):
    """A truncated Bundle and a truncated .ndjson.gz: each named in the per-file report with its cause, no
    traceback and no bare "Aborted."; the good Bundle beside them is imported."""
    import gzip

    url = f"sqlite:///{tmp_path / 'mixed.db'}"
    truncated = tmp_path / "truncated.json"
    truncated.write_text('{"resourceType": "Bundle", "type": "transaction", "entry": [')
    cut = tmp_path / "cut.ndjson.gz"
    cut.write_bytes(gzip.compress(b'{"resourceType": "Patient", "id": "cut1"}\n' * 200)[:-20])
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": "fine"}, "request": {"method": "PUT", "url": "Patient/fine"}}]}))
    proc = _cli("import", str(truncated), str(cut), str(good), "--database-url", url)
    _, err = proc.communicate(timeout=300)
    text = err.decode()
    assert proc.returncode == 1, text
    assert "Traceback" not in text and "Aborted" not in text, text
    assert "truncated.json" in text and "Malformed JSON" in text
    assert "cut.ndjson.gz cannot be read" in text
    assert _counts(url)[0] == 1  # the good Bundle's Patient


def test_import_to_a_server_sends_a_large_file_in_parts_and_names_its_own_lines(app, settings, tmp_path, monkeypatch):
    """A file larger than the server's request limit goes in parts of whole lines; a line error names the
    user's file and its line in it, not the upload the server stored nor a line within a part."""
    from typer.testing import CliRunner

    from ipt_fhir import cli
    from ipt_fhir.commands import import_export
    from tests.live_server import running

    settings.max_body_bytes = 4000
    monkeypatch.setattr(import_export, "REMOTE_PART_BYTES", 2000)
    lines = [json.dumps({"resourceType": "Patient", "id": f"part-{i}", "name": [{"family": f"Family{i}"}]})
             for i in range(100)]
    lines[72] = json.dumps({"resourceType": "Patient", "id": "bad-72", "gender": "sometimes"})
    big = tmp_path / "big.ndjson"
    big.write_text("\n".join(lines) + "\n")
    assert big.stat().st_size > settings.max_body_bytes
    with running(app) as base:
        result = CliRunner().invoke(cli.app, ["import", str(big), "--url", f"{base}/fhir"])
        assert result.exit_code == 1, result.output  # the one bad line
        assert "big.ndjson" in result.output and "line 73: " in result.output, result.output
        import httpx

        total = httpx.get(f"{base}/fhir/Patient?_summary=count").json()["total"]
    assert total == 99


def test_an_import_straight_into_a_database_cannot_take_the_servers_own_resources(tmp_path):
    """The IPT layer applies as in the server: the server's conformance resources are stored first and no
    line may overwrite one or claim its canonical URL."""
    url = f"sqlite:///{tmp_path / 'own.db'}"
    lines = tmp_path / "plans.ndjson"
    lines.write_text("\n".join(json.dumps(r) for r in (
        {"resourceType": "PlanDefinition", "id": "ipt-brief", "status": "retired", "name": "Hijacked",
         "url": "http://ipt-fhir.org/fhir/PlanDefinition/ipt-brief"},
        {"resourceType": "PlanDefinition", "id": "squat", "status": "active",
         "url": "http://ipt-fhir.org/fhir/PlanDefinition/ipt-who-group"},
        {"resourceType": "PlanDefinition", "id": "mine", "status": "draft"})) + "\n")
    proc = _cli("import", str(lines), "--database-url", url)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err.decode()[-3000:]
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = dict(conn.exec_driver_sql("SELECT id, content FROM resource WHERE resource_type = 'PlanDefinition'").all())
    engine.dispose()
    assert "mine" in rows and "squat" not in rows
    assert json.loads(rows["ipt-brief"])["status"] == "active"
