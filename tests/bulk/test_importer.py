"""The Importer itself, on SQLite and PostgreSQL: lines prepared in worker processes are stored exactly
as lines prepared in the importing thread, and what reaches the tables is what index_rows gives."""
from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import time
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from ipt_fhir.fhir.jsonio import load_stored
from ipt_fhir.services import bulk_import, bulk_prepare
from ipt_fhir.services import resources as rs
from ipt_fhir.services.bulk_import import Importer, Source
from ipt_fhir.store import bulk_write
from ipt_fhir.store.database import Database
from ipt_fhir.store.search_index import table_rows
from ipt_fhir.store.search_tables import INDEX_TABLES
from ipt_fhir.store.tables import metadata
from tests.bulk.conftest import NDJSON_DIR, read_ndjson_gz

SYNTHEA = ["Organization", "Practitioner", "Location", "Patient", "Encounter"]  # 541 lines, references between

# Crafted lines: decimals, every index table with rows, failures, the same resource twice, and a
# conditional reference the chunk scan cannot see (JSON-escaped '?'), resolved in the importing thread.
CRAFTED = [
    {"resourceType": "Patient", "id": "p1", "identifier": [{"system": "urn:test", "value": "p-1"}],
     "name": [{"family": "Rivera", "given": ["María"]}], "birthDate": "1988-04-12"},
    {"resourceType": "Observation", "id": "o1", "status": "final",
     "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
     "subject": {"reference": "Patient?identifier=urn:test|p-1"},
     "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                    "valueQuantity": {"value": 120.50, "unit": "mmHg", "system": "http://unitsofmeasure.org",
                                      "code": "mm[Hg]"}}],
     "valueQuantity": {"value": 3, "system": "http://unitsofmeasure.org", "code": "kg"}},
    {"resourceType": "RiskAssessment", "id": "r1", "status": "final", "subject": {"reference": "Patient/p1"},
     "prediction": [{"probabilityDecimal": 0.25}]},
    {"resourceType": "Patient", "id": "bad", "gender": "sometimes"},
    {"resourceType": "Encounter", "id": "e-none", "status": "finished", "class": {"code": "AMB"},
     "subject": {"reference": "Patient?identifier=urn:none|nobody"}},
    {"resourceType": "Patient", "id": "p1", "identifier": [{"system": "urn:test", "value": "p-1"}],
     "name": [{"family": "Rivera-Weiss", "given": ["María"]}], "birthDate": "1988-04-12"},
]
ESCAPED = ('{"resourceType": "Encounter", "id": "e-escaped", "status": "finished", "class": {"code": "AMB"}, '
           '"subject": {"reference": "Patient\\u003fidentifier=urn:test|p-1"}}')
CLOCK = datetime(2025, 3, 3, 9, 50, tzinfo=timezone.utc)


def _inputs(folder, crafted_lines: list[str]) -> list[Source]:
    sources = []
    for name in SYNTHEA:
        shutil.copy(NDJSON_DIR / f"{name}.000.ndjson.gz", folder / f"{name}.ndjson.gz")
        sources.append(Source.path(folder / f"{name}.ndjson.gz"))
    crafted = folder / "crafted.ndjson"
    crafted.write_text("\n".join(crafted_lines) + "\n")
    return [*sources, Source.path(crafted)]


@pytest.fixture
def inputs(tmp_path) -> list[Source]:
    return _inputs(tmp_path, [json.dumps(x) for x in CRAFTED] + [ESCAPED, "not json"])


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 40 lines: many chunks in flight, and the 550-line input goes to the workers."""
    monkeypatch.setattr(bulk_import, "CHUNK_LINES", 40)
    monkeypatch.setattr(rs, "now_utc", lambda: CLOCK)


def _empty(db: Database) -> None:
    with db.write() as conn:
        for table in reversed(metadata.sorted_tables):
            if table.name != "alembic_version":
                conn.execute(table.delete())


def _tables(db: Database) -> dict[str, list[tuple]]:
    """Every stored row: current versions, history in write order (without seq), index rows sorted."""
    with db.read() as conn:
        out = {"resource": sorted(tuple(r) for r in conn.exec_driver_sql(
            "SELECT resource_type, id, version_id, deleted, content FROM resource")),
               "history": [tuple(r) for r in conn.exec_driver_sql(
                   "SELECT resource_type, id, version_id, method, content FROM resource_history ORDER BY seq")]}
        for kind, table in INDEX_TABLES.items():
            out[kind] = sorted((tuple(r) for r in conn.execute(sa.select(table))), key=repr)
    for name in ("resource", "history"):
        out[name] = [(*r[:-1], bytes(r[-1]) if r[-1] is not None else None) for r in out[name]]
    return out


def _run(db: Database, sources: list[Source], workers: int, batch: int = 100):
    report = Importer(db, batch=batch, workers=workers).run(sources)
    return report, _tables(db)


def _errors(report) -> list[tuple[str, int, int]]:
    return [(e.file, e.line, e.status) for e in report.errors]


def test_worker_processes_store_exactly_what_the_importing_thread_stores(database, inputs, small_chunks):
    single, single_rows = _run(database, inputs, workers=0)
    _empty(database)
    pooled, pooled_rows = _run(database, inputs, workers=2)

    assert pooled_rows == single_rows
    assert (pooled.by_type(), _errors(pooled), pooled.lines) == (single.by_type(), _errors(single), single.lines)
    assert _errors(pooled) == [("crafted.ndjson", 4, 400), ("crafted.ndjson", 5, 422), ("crafted.ndjson", 8, 400)]
    patients = len(read_ndjson_gz(NDJSON_DIR / "Patient.000.ndjson.gz")) + 1  # and p1, twice: an update
    assert pooled.by_type()["Patient"] == {"created": patients, "updated": 1, "unchanged": 0, "failed": 1}
    with database.read() as conn:
        escaped = load_stored(conn.exec_driver_sql(
            "SELECT content FROM resource WHERE id = 'e-escaped'").scalar_one())
        p1_versions = conn.exec_driver_sql("SELECT count(*) FROM resource_history WHERE id = 'p1'").scalar_one()
    assert escaped["subject"]["reference"] == "Patient/p1"
    assert p1_versions == 2


def test_stored_index_rows_are_those_index_rows_gives_for_the_stored_version(database, inputs, small_chunks):
    _run(database, inputs, workers=2)
    tables = _tables(database)
    expected: dict[str, list[tuple]] = {kind: [] for kind in INDEX_TABLES}
    for resource_type, rid, _, _, content in tables["resource"]:
        for kind, rows in table_rows(resource_type, rid, load_stored(content)).items():
            expected[kind] += rows
    for kind in INDEX_TABLES:
        assert tables[kind] == sorted(expected[kind], key=repr), kind
    assert all(tables[kind] for kind in ("token", "string", "date", "number", "quantity", "reference", "uri",
                                         "composite"))
    # history: every version, its content as stored
    current = {(t, i): (v, c) for t, i, v, _, c in tables["resource"]}
    assert {(t, i): (v, c) for t, i, v, _, c in tables["history"]} == current
    assert len(tables["history"]) == len(current) + 1  # p1 has two versions


def test_a_rerun_with_workers_changes_nothing_and_a_changed_line_gets_a_version_and_new_index_rows(
        database, small_chunks, tmp_path):
    crafted = [json.dumps(x) for x in CRAFTED[:5]] + [ESCAPED]  # each resource once
    _, before = _run(database, _inputs(tmp_path, crafted), workers=2)
    again, after = _run(database, _inputs(tmp_path, crafted), workers=2)
    assert after == before
    assert sum(again.unchanged.values()) == again.lines - 2 and not again.created and not again.updated

    crafted[2] = json.dumps({**CRAFTED[2], "prediction": [{"probabilityDecimal": 0.75}]})
    report, rows = _run(database, _inputs(tmp_path, crafted), workers=2)
    assert report.updated == {"RiskAssessment": 1} and not report.created
    assert [r[3:] for r in rows["number"] if r[1] == "r1"] == [(0.75, 0.75)]  # the range [0.75, 0.75]
    assert [r[:3] for r in rows["resource"] if r[1] == "r1"] == [("RiskAssessment", "r1", 2)]
    assert rows["history"][:-1] == after["history"] and rows["history"][-1][:3] == ("RiskAssessment", "r1", 2)


def test_when_a_worker_dies_the_importing_thread_prepares_the_rest(database, inputs, small_chunks):
    single, single_rows = _run(database, inputs, workers=0)
    _empty(database)
    with bulk_prepare.workers(2) as executor:
        executor.submit(int).result()  # workers started
    victim = next(iter(executor._processes))
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while victim in {p.pid for p in executor._processes.values() if p.is_alive()} and time.monotonic() < deadline:
        time.sleep(0.05)
    report, rows = _run(database, inputs, workers=2)
    assert rows == single_rows and _errors(report) == _errors(single)
    with bulk_prepare.workers(2) as fresh:
        assert fresh is not executor  # the next import gets new workers


def test_a_value_the_database_refuses_fails_its_line_only(database, tmp_path, monkeypatch):
    original = bulk_write.insert_current

    def refusing(conn, versions):  # noqa: ANN001, ANN202
        if any(v.id == "refused" for v in versions):
            raise sqlite3.DataError("value too long for type character varying(64)")
        return original(conn, versions)

    monkeypatch.setattr(bulk_write, "insert_current", refusing)
    path = tmp_path / "x.ndjson"
    path.write_text("\n".join(json.dumps({"resourceType": "Patient", "id": i}) for i in ("a", "refused", "b")))
    report = Importer(database, workers=0).run([Source.path(path)])
    assert report.created == {"Patient": 2}
    assert _errors(report) == [("x.ndjson", 2, 400)]
    assert "refused a value of Patient/refused" in report.errors[0].issues[0].diagnostics


def test_idle_workers_are_shut_down(monkeypatch):
    monkeypatch.setattr(bulk_prepare, "IDLE_SECONDS", 0.1)
    with bulk_prepare.workers(1) as executor:
        executor.submit(int).result()
        processes = list(executor._processes.values())
    deadline = time.monotonic() + 20
    while any(p.is_alive() for p in processes) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(p.is_alive() for p in processes)
    assert bulk_prepare._pool is None


def test_cancelling_releases_the_workers(database, inputs, small_chunks):
    seen = []

    def cancelled() -> bool:
        seen.append(1)
        return len(seen) > 50

    with pytest.raises(bulk_import.Cancelled):
        Importer(database, batch=20, workers=2, cancelled=cancelled).run(inputs)
    assert bulk_prepare._users == 0
    with database.read() as conn:
        stored = conn.exec_driver_sql("SELECT count(*) FROM resource").scalar_one()
    assert stored == 40  # two whole batches written before the cancel, nothing after


def test_lines_are_numbered_as_in_the_file_across_read_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(bulk_import, "_READ_BLOCK", 7)  # every line straddles blocks
    path = tmp_path / "x.ndjson"
    path.write_bytes(b'{"a": 1}\n\n  \t\r\n{"b": "two"}\r\n{"c": 3}')
    assert list(Source.path(path).lines()) == [(1, b'{"a": 1}'), (4, b'{"b": "two"}\r'), (5, b'{"c": 3}')]
    path.write_bytes(b"")
    assert list(Source.path(path).lines()) == []


def test_an_identifier_key_written_with_escapes_still_resolves_conditional_references(tmp_path, database):
    path = tmp_path / "escaped.ndjson"
    path.write_text("\n".join([
        '{"resourceType": "Patient", "id": "pe", "\\u0069dentifier": [{"system": "urn:e", "value": "1"}]}',
        '{"resourceType": "Encounter", "id": "ee", "status": "finished", "class": {"code": "AMB"}, '
        '"subject": {"reference": "Patient?identifier=urn:e|1"}}']))
    report = Importer(database, workers=0).run([Source.path(path)])
    assert report.errors == []
    with database.read() as conn:
        content = conn.exec_driver_sql("SELECT content FROM resource WHERE id = 'ee'").scalar_one()
    assert load_stored(bytes(content))["subject"]["reference"] == "Patient/pe"


def test_a_search_url_on_another_server_is_no_conditional_reference_to_a_local_resource(tmp_path, database):
    """The same query as a local patient's identifier, but on another server: the line fails (422) instead
    of pointing at the local patient; under the importer's own base it resolves."""
    path = tmp_path / "foreign.ndjson"
    encounter = '{"resourceType": "Encounter", "id": "%s", "status": "finished", "class": {"code": "AMB"}, ' \
                '"subject": {"reference": "%s/Patient?identifier=urn:f|1"}}'
    path.write_text("\n".join([
        '{"resourceType": "Patient", "id": "pf", "identifier": [{"system": "urn:f", "value": "1"}]}',
        encounter % ("foreign", "http://other.example.org/fhir"), encounter % ("own", "http://ours.example/fhir")]))
    report = Importer(database, workers=0, base_url="http://ours.example/fhir").run([Source.path(path)])
    assert [(e.line, e.status) for e in report.errors] == [(2, 422)]
    with database.read() as conn:
        content = conn.exec_driver_sql("SELECT content FROM resource WHERE id = 'own'").scalar_one()
    assert load_stored(bytes(content))["subject"]["reference"] == "Patient/pf"


def test_worker_processes_check_the_ipt_profiles_the_importing_process_registered(database, tmp_path,
                                                                                 small_chunks):
    from ipt_fhir.domain.canonical import CAREPLAN_PROFILE, DEFAULT_CANONICAL_BASE
    from ipt_fhir.services.ipt import conformance

    conformance.install(DEFAULT_CANONICAL_BASE)
    claims = {"resourceType": "CarePlan", "status": "active", "intent": "plan",
              "meta": {"profile": [f"{DEFAULT_CANONICAL_BASE}/StructureDefinition/{CAREPLAN_PROFILE}"]},
              "subject": {"reference": "Patient/p1"}}  # the IPT profile wants much more than this
    lines = [json.dumps({**claims, "id": f"cp{i}"}) for i in range(120)]  # enough for the workers
    single, _ = _run(database, _inputs(tmp_path, lines), workers=0)
    _empty(database)
    pooled, _ = _run(database, _inputs(tmp_path, lines), workers=2)
    assert _errors(single) == _errors(pooled)
    assert [status for file, _, status in _errors(pooled) if file == "crafted.ndjson"] == [422] * 120


def test_import_gives_write_hooks_the_changes_they_want_and_all_to_one_that_does_not_say(database, tmp_path):
    from ipt_fhir.services import write_hooks
    from ipt_fhir.services.ipt.hook import IptWriteHook

    class Recording:
        def __init__(self) -> None:
            self.types: set[str] = set()

        def check(self, conn, change):  # noqa: ANN001, ANN201
            return []

        def after_write(self, conn, change) -> None:  # noqa: ANN001
            self.types.add(change.resource_type)

    class PatientsOnly(Recording):
        def wants(self, resource_type: str, stored: bytes) -> bool:
            return resource_type == "Patient"

    saved = list(write_hooks._hooks)
    seen = []
    try:
        for hook in (PatientsOnly(), Recording()):
            write_hooks._hooks[:] = [hook]
            _empty(database)
            Importer(database, workers=0).run(_inputs(tmp_path, [])[:4])  # Organization … Patient
            seen.append(hook.types)
    finally:
        write_hooks._hooks[:] = saved
    assert seen == [{"Patient"}, {"Organization", "Practitioner", "Location", "Patient"}]
    ipt = IptWriteHook()
    assert ipt.wants("Encounter", b"{}") and ipt.wants("CodeSystem", b"{}")
    assert ipt.wants("Procedure", b'{"meta":{"profile":["http://x/StructureDefinition/ipt-session-encounter"]}}')
    assert not ipt.wants("Procedure", b'{"resourceType":"Procedure"}')


def test_versions_are_stamped_when_their_batch_is_written_not_when_it_was_prepared(database, tmp_path, monkeypatch):
    """An export's transactionTime is taken with no write under way; a version stamped before it but
    committed after (prepared ahead, written batches later) would be in no export's `_since` window."""
    lines = tmp_path / "late.ndjson"
    lines.write_text("\n".join(json.dumps({"resourceType": "Patient", "id": f"late-{i}"}) for i in range(3)) + "\n")
    write_batch = Importer._write_batch

    def slow_write(self, batch):  # noqa: ANN001, ANN202
        time.sleep(0.3)  # prepared (and provisionally stamped) before this
        return write_batch(self, batch)

    monkeypatch.setattr(Importer, "_write_batch", slow_write)
    before = rs.now_utc()
    Importer(database, batch=100, workers=0).run([Source.path(lines)])
    with database.read() as conn:
        rows = conn.exec_driver_sql("SELECT content, last_updated FROM resource_history").all()
    assert len(rows) == 3
    for content, last_updated in rows:
        stamped = load_stored(content)["meta"]["lastUpdated"]
        assert stamped >= rs.format_instant(before + timedelta(seconds=0.3)), stamped
        column = last_updated if isinstance(last_updated, datetime) else datetime.fromisoformat(last_updated)
        assert rs.format_instant(column.replace(tzinfo=column.tzinfo or timezone.utc)) == stamped
