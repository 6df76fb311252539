"""SQLite holds a new resource's search index rows back (store/pending_index.py); nobody may notice.

Every test here stops the background checkpointer, so rows move only when a reader needs them: a
search, a conditional write, an update or a delete that forgot to bring the index current would find
the resource missing or its old rows still there.
"""
from __future__ import annotations

import gzip
import json
import shutil
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from ipt_fhir.app import create_app
from ipt_fhir.services.search import find_ids, search
from ipt_fhir.settings import Settings
from ipt_fhir.store import migrate, pending_index
from ipt_fhir.store.database import Database
from ipt_fhir.store.search_tables import INDEX_TABLES, pending_index_table

BASE = "http://testserver/fhir"


def _count(db: Database, tables: list[sa.Table]) -> int:
    with db.engine.connect() as conn:  # not db.read(): that would move the rows first
        return sum(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one() for t in tables)


def _pending(db: Database) -> int:
    """Resources whose index rows are pending."""
    return _count(db, [pending_index_table])


def _indexed(db: Database) -> int:
    return _count(db, list(INDEX_TABLES.values()))


@pytest.fixture
def db(quiet_sqlite_db):  # no background rounds: only readers move rows
    return quiet_sqlite_db


@pytest.fixture
def client(quiet_sqlite_client):
    return quiet_sqlite_client


def _patient(family: str, mrn: str) -> dict:
    return {"resourceType": "Patient", "name": [{"family": family}], "gender": "female",
            "identifier": [{"system": "urn:mrn", "value": mrn}]}


def _ids(client: TestClient, query: str) -> list[str]:
    bundle = client.get(f"/fhir/Patient?{query}").json()
    return sorted(e["resource"]["id"] for e in bundle.get("entry", []))


def test_a_created_resource_is_found_at_once_and_its_rows_then_sit_in_the_index(client, db):
    before = _indexed(db)  # the server's own IPT conformance resources, stored at start
    pid = client.post("/fhir/Patient", json=_patient("Ng", "1")).json()["id"]
    assert _pending(db) > 0 and _indexed(db) == before
    assert _ids(client, "family=ng") == [pid]
    assert _pending(db) == 0 and _indexed(db) > before


def test_an_update_of_a_resource_whose_rows_are_pending_replaces_them(client, db):
    pid = client.post("/fhir/Patient", json=_patient("Old", "2")).json()["id"]
    client.put(f"/fhir/Patient/{pid}", json={**_patient("New", "2"), "id": pid})
    assert _ids(client, "family=old") == []
    assert _ids(client, "family=new") == [pid]
    assert _ids(client, "identifier=urn:mrn|2") == [pid]  # once, not twice


def test_a_patch_and_a_delete_right_after_the_create_leave_no_stale_rows(client, db):
    first = client.post("/fhir/Patient", json=_patient("Patched", "3")).json()["id"]
    client.patch(f"/fhir/Patient/{first}", headers={"Content-Type": "application/json-patch+json"},
                 content=b'[{"op": "replace", "path": "/gender", "value": "male"}]')
    second = client.post("/fhir/Patient", json=_patient("Gone", "4")).json()["id"]
    assert client.delete(f"/fhir/Patient/{second}").status_code in (200, 204)
    assert _ids(client, "gender=female") == []
    assert _ids(client, "gender=male") == [first]
    assert _ids(client, "family=gone") == []


def test_a_conditional_create_finds_the_resource_created_just_before(client, db):
    pid = client.post("/fhir/Patient", json=_patient("Once", "5")).json()["id"]
    again = client.post("/fhir/Patient", json=_patient("Once", "5"), headers={"If-None-Exist": "identifier=urn:mrn|5"})
    assert again.status_code == 200 and again.json()["id"] == pid


def test_a_transaction_resolves_a_conditional_reference_to_a_resource_created_just_before(client, db):
    pid = client.post("/fhir/Patient", json=_patient("Ref", "6")).json()["id"]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [{
        "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                     "subject": {"reference": "Patient?identifier=urn:mrn|6"}},
        "request": {"method": "POST", "url": "Observation"}}]}
    response = client.post("/fhir", json=bundle)
    assert response.status_code == 200, response.text
    found = client.get("/fhir/Observation", params={"subject": f"Patient/{pid}"}).json()
    assert found["total"] == 1


def test_searches_inside_a_create_or_update_unit_of_work_see_pending_rows(client, db):
    """The IPT rules and read model search inside the unit of work of a plain write (which does not move
    pending rows when it starts, unlike Database.write())."""
    pid = client.post("/fhir/Patient", json=_patient("Inside", "9")).json()["id"]
    assert db.run_write(lambda conn: find_ids(conn, "Patient", [("family", "inside")], BASE)) == [pid]
    client.post("/fhir/Patient", json=_patient("Inside", "10"))
    bundle = db.run_write(lambda conn: search(db, "Patient", [("family", "inside")], base_url=BASE,
                                              request_url=BASE + "/Patient", conn=conn))
    assert json.loads(bundle)["total"] == 2


def test_another_process_moves_the_rows_this_one_left_pending(client, db, sqlite_url):
    pid = client.post("/fhir/Patient", json=_patient("Elsewhere", "7")).json()["id"]
    other = Database(sqlite_url)  # as a second server process on the same file would
    other._checkpointer._stopped.set()
    try:
        with TestClient(create_app(Settings(database_url=sqlite_url), other), base_url="http://testserver") as c2:
            assert _ids(c2, "family=elsewhere") == [pid]
    finally:
        other.dispose()
    assert _pending(db) == 0


def test_the_checkpointer_moves_pending_rows_in_the_background(client, db):
    for i in range(5):
        client.post("/fhir/Patient", json=_patient(f"Bg{i}", f"b{i}"))
    assert _pending(db) > 0
    db._checkpointer._stopped.clear()  # as a running checkpointer (the fixture stops it before it starts)
    try:
        db._checkpointer.run_round()
    finally:
        db._checkpointer._stopped.set()
    assert _pending(db) == 0
    assert len(_ids(client, "gender=female")) == 5


def _rows_of_pending(db: Database) -> int:
    """The index rows the pending resources will have (extracted, not moved)."""
    with db.engine.connect() as conn:
        extracted = pending_index.extract_oldest(conn.connection.driver_connection)
    return sum(len(json.loads(rows)) for rows in extracted.rows.values())


def test_the_background_mover_moves_the_oldest_pending_resources_in_short_units(client, db):
    ids = [client.post("/fhir/Patient", json=_patient(f"Chunk{i}", f"c{i}")).json()["id"] for i in range(5)]
    assert db.move_pending_index(2)
    assert _pending(db) == 3
    with db.engine.connect() as conn:
        moved = {r[0] for r in conn.exec_driver_sql("SELECT resource_id FROM search_token WHERE param = 'gender'")}
    assert moved == set(ids[:2])
    assert sorted(_ids(client, "gender=female")) == sorted(ids)  # the rest moved by the search
    assert not db.move_pending_index(2)


def test_migration_0010_downgrade_keeps_the_pending_rows(client, db, sqlite_url):
    pid = client.post("/fhir/Patient", json=_patient("Kept", "8")).json()["id"]
    assert _pending(db) == 1
    db.run_write(lambda conn: None)  # nothing moves them: a plain unit of work does not read the index
    rows = _rows_of_pending(db) + _indexed(db)
    db.dispose()
    migrate.downgrade(sqlite_url, "0009_implicit_code_systems")
    engine = sa.create_engine(sqlite_url)
    with engine.connect() as conn:
        assert pending_index_table.name not in sa.inspect(conn).get_table_names()
        found = conn.exec_driver_sql("SELECT resource_id FROM search_string WHERE param = 'family' AND value = 'kept'")
        assert [r[0] for r in found] == [pid]
        assert sum(conn.exec_driver_sql(f"SELECT count(*) FROM {t.name}").scalar_one()
                   for t in INDEX_TABLES.values()) == rows
    engine.dispose()
    migrate.upgrade(sqlite_url)


def test_moved_rows_are_exactly_the_rows_a_direct_write_makes(tmp_path, sqlite_template):
    """Every column value and storage type (text, integer, real, null), over the HL7 examples and three
    Synthea patients: extraction from the stored JSON and the JSON round trip of the extracted rows lose
    nothing (strings, 64-bit dates, float digits)."""
    from ipt_fhir.fhir.jsonio import dump_json
    from ipt_fhir.store import resources as repo
    from ipt_fhir.store.search_index import _insert, write_index
    from tests.conftest import FIXTURES

    def fresh(name: str) -> Database:
        shutil.copy(sqlite_template, tmp_path / name)
        database = Database(f"sqlite:///{tmp_path / name}")
        database._checkpointer._stopped.set()
        return database

    held, direct = fresh("held.db"), fresh("direct.db")
    examples = [json.loads(p.read_text()) for p in sorted((FIXTURES / "hl7-r4-examples" / "resources").glob("*.json"))]
    for path in sorted((FIXTURES / "synthea" / "bundles").glob("*.json.gz"))[:3]:
        examples += [e["resource"] for e in json.loads(gzip.decompress(path.read_bytes()))["entry"]]
    examples = list({(r["resourceType"], r["id"]): r for r in examples
                     if isinstance(r, dict) and r.get("resourceType") and r.get("id")}.values())
    assert len(examples) > 500
    for r in examples:  # a first version: write_index holds its rows back
        r["meta"] = {**r.get("meta", {}), "versionId": "1"}
    with held.write() as conn:
        for r in examples:
            now = datetime.now(timezone.utc)
            repo.insert_new(conn, repo.StoredVersion(r["resourceType"], r["id"], 1, now, False, dump_json(r)), "POST")
            write_index(conn, r["resourceType"], r["id"], r)
    with direct.write() as conn:
        from ipt_fhir.fhir.search.indexer import index_rows
        for r in examples:
            _insert(conn, r["resourceType"], r["id"], index_rows(r["resourceType"], r))
    assert _pending(held) > 1000
    try:
        for table in INDEX_TABLES.values():
            cols = ", ".join(f"{c.name}, typeof({c.name})" for c in table.columns)
            query = f"SELECT {cols} FROM {table.name} ORDER BY {', '.join(c.name for c in table.columns)}"
            with held.read() as a, direct.read() as b:  # held.read() moves the pending rows first
                assert a.exec_driver_sql(query).all() == b.exec_driver_sql(query).all(), table.name
        assert _pending(held) == 0
    finally:
        held.dispose()
        direct.dispose()


def test_under_concurrent_creates_updates_and_moves_every_write_is_searchable_at_once(sqlite_url, tmp_path):
    """Many clients at once, the background mover running: each finds what it just wrote, and never the
    value it just replaced."""
    import asyncio

    import httpx

    from tests.live_server import running

    database = Database(sqlite_url)
    app = create_app(Settings(database_url=sqlite_url, bulk_dir=str(tmp_path / "bulk")), database)

    async def client_run(http: httpx.AsyncClient, n: int) -> list[str]:
        problems = []
        for i in range(12):
            family = f"conc{n}x{i}"
            created = (await http.post("/fhir/Patient", json=_patient(family, f"{n}-{i}"))).json()
            found = (await http.get("/fhir/Patient", params={"family": family})).json()
            if [e["resource"]["id"] for e in found.get("entry", [])] != [created["id"]]:
                problems.append(f"create {family}: {found.get('total')}")
            await http.put(f"/fhir/Patient/{created['id']}", json={**_patient(f"{family}b", f"{n}-{i}"),
                                                                   "id": created["id"]})
            if (await http.get("/fhir/Patient", params={"family:exact": family})).json()["total"] != 0:
                problems.append(f"update {family}: old name still found")
        return problems

    async def main(base: str) -> list[str]:
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            results = await asyncio.gather(*[client_run(http, n) for n in range(8)])
        return [p for r in results for p in r]

    try:
        with running(app) as base:
            assert asyncio.run(main(base)) == []
    finally:
        database.dispose()
