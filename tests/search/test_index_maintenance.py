"""Index upkeep: delete removes rows, updates replace them, reindex rebuilds, migration 0002 round-trips."""
from __future__ import annotations

import sqlalchemy as sa

from ipt_fhir.store import migrate
from ipt_fhir.store.search_index import reindex_all
from ipt_fhir.store.search_tables import INDEX_TABLES

from .harness import remove


def _rows(db) -> int:
    with db.read() as conn:
        return sum(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one() for t in INDEX_TABLES.values())


def test_update_replaces_and_delete_removes_index_rows(engine):
    engine.put({"resourceType": "Patient", "id": "x", "gender": "male", "name": [{"family": "Old"}]})
    engine.put({"resourceType": "Patient", "id": "x", "gender": "male", "name": [{"family": "New"}],
                "meta": {"versionId": "2"}})
    assert engine.ids("Patient", "family=old") == set()
    assert engine.ids("Patient", "family=new") == {"x"}
    remove(engine.db, "Patient", "x")
    assert engine.ids("Patient", "gender=male") == set()
    assert _rows(engine.db) == 0


def test_reindex_rebuilds_every_row(engine):
    for i in range(30):
        engine.put({"resourceType": "Patient", "id": f"r{i}", "gender": "female", "name": [{"family": f"F{i}"}]})
    before = _rows(engine.db)
    with engine.db.write() as conn:
        for t in INDEX_TABLES.values():
            conn.execute(t.delete())
    assert engine.ids("Patient", "gender=female") == set()
    seen = []
    assert reindex_all(engine.db, seen.append, batch=7) == 30
    assert seen[-1] == 30
    assert _rows(engine.db) == before
    assert len(engine.ids("Patient", "gender=female&_count=100")) == 30


def test_migration_0002_upgrades_downgrades_upgrades(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    migrate.upgrade(url, "0002_search_index")
    migrate.downgrade(url, "0001_core")
    names = set(sa.inspect(sa.create_engine(url)).get_table_names())
    assert not names & {t.name for t in INDEX_TABLES.values()}
    migrate.upgrade(url, "0002_search_index")
    names = set(sa.inspect(sa.create_engine(url)).get_table_names())
    assert {t.name for t in INDEX_TABLES.values()} <= names


def test_us_core_searches(engine):
    p = {"reference": "Patient/p"}
    engine.put({"resourceType": "Patient", "id": "p", "gender": "female", "birthDate": "1990-05-05",
                "name": [{"family": "Rossi", "given": ["Maria"]}], "identifier": [{"system": "urn:mrn", "value": "7"}]})
    engine.put({"resourceType": "Goal", "id": "g", "lifecycleStatus": "active", "subject": p,
                "description": {"text": "Sleep better"}, "target": [{"dueDate": "2025-06-01"}]})
    engine.put({"resourceType": "Encounter", "id": "e", "status": "finished", "subject": p,
                "identifier": [{"system": "urn:enc", "value": "E1"}],
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "type": [{"coding": [{"system": "http://snomed.info/sct", "code": "185347001"}]}],
                "period": {"start": "2025-02-01T10:00:00Z", "end": "2025-02-01T11:00:00Z"}})
    engine.put({"resourceType": "Condition", "id": "c", "subject": p, "code": {"text": "MDD"},
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                          "code": "problem-list-item"}]}]})
    engine.put({"resourceType": "Observation", "id": "o", "status": "final", "subject": p,
                "category": [{"coding": [{"code": "survey"}]}], "code": {"coding": [{"system": "http://loinc.org",
                                                                                      "code": "44261-6"}]},
                "effectiveDateTime": "2025-02-01"})
    checks = [
        ("Goal", "patient=p&lifecycle-status=active", {"g"}), ("Goal", "patient=p&target-date=2025-06", {"g"}),
        ("Goal", "patient=p&description:text=sleep", {"g"}),
        ("Encounter", "_id=e", {"e"}), ("Encounter", "patient=p&date=2025-02-01", {"e"}),
        ("Encounter", "identifier=urn:enc|E1", {"e"}), ("Encounter", "class=AMB", {"e"}),
        ("Encounter", "type=185347001", {"e"}), ("Encounter", "status=finished&patient=Patient/p", {"e"}),
        ("Condition", "patient=p&category=problem-list-item", {"c"}),
        ("Observation", "patient=p&category=survey&date=ge2025-01-01", {"o"}),
        ("Observation", "patient=p&code=http://loinc.org|44261-6", {"o"}),
        ("Patient", "name=maria", {"p"}), ("Patient", "family=ross", {"p"}), ("Patient", "given=mar", {"p"}),
        ("Patient", "birthdate=1990-05-05", {"p"}), ("Patient", "gender=female", {"p"}),
        ("Patient", "identifier=urn:mrn|7", {"p"}),
    ]
    for rt, q, expected in checks:
        assert engine.ids(rt, q) == expected, (rt, q)


def test_reindex_gives_a_composite_stored_before_its_valueless_row(engine):
    """README: resources stored before composites got a valueless row for `:missing` get it from
    `ipt-fhir db reindex` (reindex_all): their rows are dropped here as if written by the old code."""
    from ipt_fhir.store.search_tables import composite_index as c

    engine.put({"resourceType": "Group", "id": "g", "type": "person", "actual": True,
                "characteristic": [{"code": {"text": "gender"}, "valueBoolean": True, "exclude": False}]})
    with engine.db.write() as conn:
        conn.execute(c.delete())
    assert engine.ids("Group", "characteristic-value:missing=true") == {"g"}  # as before the change
    reindex_all(engine.db, lambda n: None)
    assert engine.ids("Group", "characteristic-value:missing=true") == set()
    assert engine.ids("Group", "characteristic-value:missing=false") == {"g"}
