"""Every Alembic revision upgrades and downgrades on SQLite and PostgreSQL with data in the tables:
head -> base -> head, then one step at a time down and up again; the server works afterwards."""
from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient

from ipt_fhir.api.openapi_examples import demo_course
from ipt_fhir.app import create_app
from ipt_fhir.fhir.search.values import to_micros
from ipt_fhir.settings import Settings
from ipt_fhir.store import migrate
from ipt_fhir.store.database import Database


def _row_counts(url: str) -> dict[str, int]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            names = [t for t in sa.inspect(conn).get_table_names() if t != "alembic_version"]
            return {t: conn.exec_driver_sql(f'SELECT count(*) FROM "{t}"').scalar_one() for t in names}
    finally:
        engine.dispose()


def _load_and_check(url: str) -> str:
    """Store one IPT course (resources, history, search index, IPT read model) and read it back."""
    db = Database(url)
    try:
        with TestClient(create_app(Settings(database_url=url), db)) as client:
            response = client.post("/fhir", json=demo_course())
            assert response.status_code == 200, response.text[:2000]
            plan = next(e["response"]["location"] for e in response.json()["entry"]
                        if e["response"]["location"].startswith("CarePlan/"))
            plan_id = plan.split("/")[1]
            patient = client.get(f"/fhir/{plan.rsplit('/_history', 1)[0]}").json()["subject"]["reference"]
            found = client.get("/fhir/CarePlan", params={"subject": patient}).json()
            assert [e["resource"]["id"] for e in found.get("entry", [])] == [plan_id]
            return plan_id
    finally:
        db.dispose()


def _revisions(url: str) -> list[str]:
    script = ScriptDirectory.from_config(migrate.alembic_config(url))
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def test_upgrade_downgrade_upgrade_with_data_present(fresh_database_url):
    url = fresh_database_url
    revisions = _revisions(url)
    assert len(revisions) >= 3

    migrate.upgrade(url)
    _load_and_check(url)
    counts = _row_counts(url)
    filled = {t for t, n in counts.items() if n > 0}
    assert {"resource"} <= filled and len(filled) >= 4, counts

    migrate.downgrade(url, "base")
    assert migrate.current_revision(url) is None
    assert _row_counts(url) == {}, "downgrade to base left tables behind"

    migrate.upgrade(url)
    assert migrate.is_current(url)
    assert set(_row_counts(url)) == set(counts), "upgrade after downgrade did not recreate every table"
    _load_and_check(url)


def test_each_revision_steps_down_and_up_with_data_present(fresh_database_url):
    url = fresh_database_url
    revisions = _revisions(url)
    migrate.upgrade(url)
    _load_and_check(url)
    for expected in reversed(revisions[:-1]):
        migrate.downgrade(url, "-1")
        assert migrate.current_revision(url) == expected
    migrate.downgrade(url, "-1")
    assert migrate.current_revision(url) is None
    for expected in revisions:
        migrate.upgrade(url, "+1")
        assert migrate.current_revision(url) == expected
    _load_and_check(url)


def test_0007_drops_duplicate_index_rows_and_its_downgrade_restores_them(fresh_database_url):
    """`_lastUpdated` and reference-alias rows: gone at 0007, rebuilt exactly by its downgrade."""
    url = fresh_database_url
    migrate.upgrade(url)
    _load_and_check(url)
    engine = sa.create_engine(url)
    lu_rows = "SELECT count(*) FROM search_date WHERE param = '_lastUpdated'"
    patient_rows = ("SELECT resource_type, resource_id, target_type, target_id FROM search_reference "
                    "WHERE param = '{}' AND resource_type IN ('CarePlan', 'Goal', 'Encounter', 'Condition') {}"
                    "ORDER BY 1, 2, 3, 4")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql(lu_rows).scalar_one() == 0
            assert conn.exec_driver_sql(patient_rows.format("patient", "")).all() == []
            as_subject = conn.exec_driver_sql(patient_rows.format("subject", "AND target_type = 'Patient' ")).all()
            current = conn.exec_driver_sql("SELECT count(*) FROM resource WHERE NOT deleted").scalar_one()
        assert as_subject
        migrate.downgrade(url, "0006_leaner_reference_index")
        with engine.connect() as conn:
            assert conn.exec_driver_sql(lu_rows).scalar_one() == current
            assert conn.exec_driver_sql(patient_rows.format("patient", "")).all() == as_subject
            stamps = conn.exec_driver_sql(
                "SELECT d.low, r.last_updated FROM search_date d JOIN resource r ON r.resource_type = "
                "d.resource_type AND r.id = d.resource_id WHERE d.param = '_lastUpdated'").all()
        assert all(low == to_micros(lu if isinstance(lu, datetime) else datetime.fromisoformat(lu))
                   for low, lu in stamps)
        migrate.upgrade(url)
        with engine.connect() as conn:
            assert conn.exec_driver_sql(lu_rows).scalar_one() == 0
            assert conn.exec_driver_sql(patient_rows.format("patient", "")).all() == []
    finally:
        engine.dispose()


def test_stored_json_is_compressed_with_lz4_on_postgresql(fresh_database_url):
    url = fresh_database_url
    if not url.startswith("postgresql"):
        pytest.skip("SQLite has no per-column compression")
    compression = ("SELECT attrelid::regclass::text, attcompression FROM pg_attribute WHERE attname = 'content' "
                   "AND attrelid IN ('resource'::regclass, 'resource_history'::regclass) ORDER BY 1")
    migrate.upgrade(url)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql(compression).all() == [("resource", "l"), ("resource_history", "l")]
        migrate.downgrade(url, "0007_rows_only_where_needed")
        with engine.connect() as conn:
            assert conn.exec_driver_sql(compression).all() == [("resource", "p"), ("resource_history", "p")]
    finally:
        engine.dispose()
    migrate.upgrade(url)
    _load_and_check(url)


def test_0009_gives_existing_code_rows_their_value_sets_system_and_its_downgrade_takes_it_back(fresh_database_url):
    """Rows written before 0009 carry no system on plain codes (CarePlan.status, .intent): 0009 adds the
    one the indexer now writes, so `status=<system>|active` finds old data too; the downgrade removes it."""
    url = fresh_database_url
    migrate.upgrade(url)
    _load_and_check(url)
    engine = sa.create_engine(url)
    rows = ("SELECT resource_id, param, system, code FROM search_token WHERE resource_type = 'CarePlan' "
            "AND param IN ('status', 'intent') ORDER BY 1, 2")
    try:
        with engine.connect() as conn:
            written = conn.exec_driver_sql(rows).all()
        assert written and {(p, s) for _, p, s, _ in written} == {
            ("status", "http://hl7.org/fhir/request-status"), ("intent", "http://hl7.org/fhir/request-intent")}
        migrate.downgrade(url, "0008_lz4_stored_json")
        with engine.connect() as conn:
            assert {s for _, _, s, _ in conn.exec_driver_sql(rows).all()} == {None}
        migrate.upgrade(url)
        with engine.connect() as conn:
            assert conn.exec_driver_sql(rows).all() == written
    finally:
        engine.dispose()


def _migration(name: str):  # noqa: ANN202
    import importlib.util
    from pathlib import Path

    path = Path(migrate.__file__).resolve().parents[2] / "migrations" / "versions" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_the_tables_frozen_in_migrations_0007_and_0009_are_what_the_indexer_does():
    """Rows a migration rewrote and rows written after it must agree: the frozen tables equal the live
    reference aliases (0007) and implicit code systems (0009)."""
    from collections import defaultdict

    from ipt_fhir.fhir.resource_types import RESOURCE_TYPES
    from ipt_fhir.fhir.search.indexer import implicit_system
    from ipt_fhir.fhir.search.registry import registry

    aliases: dict[tuple, list[str]] = defaultdict(list)
    systems: dict[tuple, list[str]] = defaultdict(list)
    for rt in sorted(RESOURCE_TYPES):
        for code, p in sorted(registry().params(rt).items()):
            alias = registry().reference_alias(rt, code)
            if alias:
                aliases[(code, *alias)].append(rt)
            if p.type == "token" and (system := implicit_system(rt, p)):
                systems[(code, system)].append(rt)
    assert {k: tuple(v) for k, v in aliases.items()} == _migration("0007_rows_only_where_needed").ALIASES
    assert {k: tuple(v) for k, v in systems.items()} == _migration("0009_implicit_code_systems").IMPLICIT_SYSTEMS


_RANGE_DOCS = [  # (type, id, JSON) holding Range targets, and a point beside them
    ("Condition", "c1", {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p"},
                         "onsetRange": {"low": {"value": 5, "system": "http://unitsofmeasure.org", "code": "a",
                                                "unit": "years"}}}),
    ("RiskAssessment", "r1", {"resourceType": "RiskAssessment", "id": "r1", "status": "final",
                              "subject": {"reference": "Patient/p"},
                              "prediction": [{"probabilityRange": {"low": {"value": 0.2}, "high": {"value": 0.4}}},
                                             {"probabilityDecimal": 0.9}]}),
    ("ValueSet", "v1", {"resourceType": "ValueSet", "id": "v1", "status": "active", "useContext": [
        {"code": {"system": "http://terminology.hl7.org/CodeSystem/usage-context-type", "code": "age"},
         "valueRange": {"low": {"value": 18, "code": "a"}, "high": {"value": 65, "code": "a"}}}]}),
]
# What the indexer before 0011 wrote for them: each bounded end of a Range as a point, no Range probability
_OLD_ROWS = {
    "search_quantity": [("Condition", "c1", "onset-age", 5.0, "http://unitsofmeasure.org", "a"),
                        ("Condition", "c1", "onset-age", 5.0, None, "years"),
                        ("ValueSet", "v1", "context-quantity", 18.0, None, "a"),
                        ("ValueSet", "v1", "context-quantity", 65.0, None, "a")],
    "search_number": [("RiskAssessment", "r1", "probability", 0.9)],
    "search_composite": [("ValueSet", "v1", "context-type-quantity", "http://terminology.hl7.org/CodeSystem/"
                          "usage-context-type", "age", None, None, None, "a", n, n, None, None, None, None)
                         for n in (18.0, 65.0)],
}
_ROW_SQL = {
    "search_quantity": "SELECT resource_type, resource_id, param, value, high, system, code FROM search_quantity",
    "search_number": "SELECT resource_type, resource_id, param, value, high FROM search_number",
    "search_composite": "SELECT * FROM search_composite WHERE param = 'context-type-quantity'",
}


def _store_current(conn, docs) -> None:  # noqa: ANN001 - a Connection; (type, id, resource) triples
    """Current versions written straight into `resource`, as a store at an older revision holds them."""
    from ipt_fhir.fhir.jsonio import dump_json

    conn.execute(sa.text("INSERT INTO resource (resource_type, id, version_id, last_updated, deleted, content) "
                         "VALUES (:rt, :id, 1, :lu, :deleted, :content)"),
                 [{"rt": rt, "id": rid, "lu": datetime(2025, 1, 1), "deleted": False, "content": dump_json(doc)}
                  for rt, rid, doc in docs])


@contextmanager
def _searching(url: str):  # noqa: ANN202
    """The ids a search of the migrated database finds, through the app."""
    db = Database(url)
    try:
        with TestClient(create_app(Settings(database_url=url), db)) as client:
            yield lambda query: {e["resource"]["id"] for e in client.get(f"/fhir/{query}").json().get("entry", [])}
    finally:
        db.dispose()


def test_0011_rebuilds_the_rows_of_range_targets_as_the_indexer_writes_them_and_its_downgrade_restores_points(
        fresh_database_url):
    """Rows written before 0011 hold a Range as separate points: the upgrade leaves exactly the rows the
    indexer writes now (one range per Range), searches find them; the downgrade gives back the points."""
    from ipt_fhir.fhir.search.indexer import index_rows

    url = fresh_database_url
    migrate.upgrade(url, "0010_pending_index_rows")
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            _store_current(conn, _RANGE_DOCS)
            for table, rows in _OLD_ROWS.items():
                marks = ", ".join(f":v{i}" for i in range(len(rows[0])))
                columns = {"search_quantity": "(resource_type, resource_id, param, value, system, code)",
                           "search_number": "(resource_type, resource_id, param, value)",
                           "search_composite": ""}[table]
                conn.execute(sa.text(f"INSERT INTO {table} {columns} VALUES ({marks})"),
                             [{f"v{i}": x for i, x in enumerate(row)} for row in rows])
        migrate.upgrade(url)
        expected: dict[str, set] = {"search_quantity": set(), "search_number": set(), "search_composite": set()}
        for rt, rid, doc in _RANGE_DOCS:
            for kind, rows in index_rows(rt, doc).items():
                if f"search_{kind}" in expected:
                    expected[f"search_{kind}"] |= {(rt, rid, *row) for row in rows
                                                   if kind != "composite" or row[0] == "context-type-quantity"}
        with engine.connect() as conn:
            assert {t: set(map(tuple, conn.exec_driver_sql(sql).all())) for t, sql in _ROW_SQL.items()} == expected
        with _searching(url) as ids:
            assert ids("Condition?onset-age=gt100") == {"c1"}  # 5 or more
            assert ids("RiskAssessment?probability=gt0.35") == {"r1"}
            assert ids("ValueSet?context-quantity=18") == set()
            assert ids("ValueSet?context-type-quantity=age$gt60") == {"v1"}
        migrate.downgrade(url, "0010_pending_index_rows")
        old_sql = {"search_quantity": "SELECT resource_type, resource_id, param, value, system, code "
                                      "FROM search_quantity",
                   "search_number": "SELECT resource_type, resource_id, param, value FROM search_number",
                   "search_composite": _ROW_SQL["search_composite"]}
        with engine.connect() as conn:
            assert {t: set(map(tuple, conn.exec_driver_sql(sql).all())) for t, sql in old_sql.items()} == \
                {t: set(rows) for t, rows in _OLD_ROWS.items()}
    finally:
        engine.dispose()


def test_the_parameters_frozen_in_migration_0011_are_those_reaching_a_range():
    """Every quantity or number parameter whose elements include a Range is rebuilt by 0011, and only those."""
    from ipt_fhir.fhir.resource_types import RESOURCE_TYPES
    from ipt_fhir.fhir.search.path_types import Unresolved, reached_types
    from ipt_fhir.fhir.search.registry import registry, split_union

    reaching: dict[str, set[str]] = {}
    for rt in sorted(RESOURCE_TYPES):
        for code, p in registry().params(rt).items():
            if p.type in ("number", "quantity"):
                try:
                    types = {t for part in split_union(p.expression or "") for t in reached_types(part, rt)}
                except Unresolved:
                    continue
                if "Range" in types:
                    reaching.setdefault(rt, set()).add(code)
    m = _migration("0011_number_ranges")
    assert {rt: set(params) for rt, params in m.RANGE_PARAMS.items()} == reaching
    assert set(m.CONTEXT_TYPES) == {rt for rt in RESOURCE_TYPES if "context-type-quantity" in registry().params(rt)}


def test_0011_rebuilds_a_range_bounded_only_above_and_one_whose_ends_differ_in_unit_spelling(fresh_database_url):
    """The high end's units count too: a Range with only a high end ("3 years or less") gets its rows
    from that end, and a Range whose high end has another human unit is found by either spelling."""
    from ipt_fhir.fhir.search.indexer import index_rows

    ucum = "http://unitsofmeasure.org"
    docs = [("Condition", cid, {"resourceType": "Condition", "id": cid, "subject": {"reference": "Patient/p"},
                                "onsetRange": onset})
            for cid, onset in (("upto3", {"high": {"value": 3, "system": ucum, "code": "a", "unit": "years"}}),
                               ("spelled", {"low": {"value": 5, "system": ucum, "code": "a", "unit": "yr"},
                                            "high": {"value": 9, "system": ucum, "code": "a", "unit": "years"}}))]
    url = fresh_database_url
    migrate.upgrade(url, "0010_pending_index_rows")
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            _store_current(conn, docs)
        migrate.upgrade(url)
        expected = {(rt, rid, *row) for rt, rid, doc in docs for row in index_rows(rt, doc)["quantity"]}
        with engine.connect() as conn:
            assert set(map(tuple, conn.exec_driver_sql(_ROW_SQL["search_quantity"]).all())) == expected
        with _searching(url) as ids:
            assert ids("Condition?onset-age=lt1") == {"upto3"}
            assert ids("Condition?onset-age=gt6||years") == {"spelled"}
    finally:
        engine.dispose()
