"""Parameters without index rows of their own search exactly as if they had them: `_lastUpdated` (the
resource row's last_updated column) and reference aliases such as `Observation.patient`
(`Observation.subject.where(resolve() is Patient)`, read from subject's rows narrowed to Patient)."""
from __future__ import annotations

from datetime import datetime

import pytest
import sqlalchemy as sa

from .conftest import BASE
from .harness import put


@pytest.fixture
def stamped(engine):
    for rid, stamp in (("A", "2025-03-04T10:00:00.000001+00:00"), ("B", "2025-03-04T10:00:00+00:00"),
                       ("C", "2025-03-05T00:00:00+00:00"), ("D", "2025-03-03T23:59:59.999999+00:00")):
        put(engine.db, {"resourceType": "Basic", "id": rid, "code": {"text": "x"}}, datetime.fromisoformat(stamp))
    return engine


@pytest.mark.parametrize("query,expected", [
    ("2025-03-04", {"A", "B"}),
    ("eq2025-03-04T10:00:00Z", {"A", "B"}),  # a second holds both instants
    ("eq2025-03-04T10:00:00.000001Z", {"A"}),
    ("ne2025-03-04", {"C", "D"}),
    ("gt2025-03-04T10:00:00Z", {"C"}),
    ("ge2025-03-04T10:00:00Z", {"A", "B", "C"}),
    ("lt2025-03-04", {"D"}),
    ("le2025-03-04", {"A", "B", "D"}),
    ("sa2025-03-04", {"C"}),
    ("eb2025-03-04", {"D"}),
    ("gt2025-03-04T11:00:00+01:00", {"C"}),  # zones: 11:00+01:00 is 10:00Z
    ("lt0001-01-01", set()),  # bounds beyond what a datetime holds are clamped, not errors
    ("ge0001-01-01", {"A", "B", "C", "D"}),
    ("gt9999-12-31", set()),
])
def test_last_updated_prefixes_on_the_resource_row(stamped, query, expected):
    assert stamped.ids("Basic", [("_lastUpdated", query)]) == expected


def test_last_updated_combines_sorts_and_is_never_missing(stamped):
    assert stamped.ids("Basic", "_lastUpdated=gt2025-03-03&_lastUpdated=lt2025-03-05") == {"A", "B"}
    assert stamped.ids("Basic", "_lastUpdated=eq2025-03-03,eq2025-03-05") == {"C", "D"}
    assert stamped.ids("Basic", "_lastUpdated:missing=true") == set()
    assert stamped.ids("Basic", "_lastUpdated:missing=false") == {"A", "B", "C", "D"}
    for sort, order in (("_lastUpdated", ["D", "B", "A", "C"]), ("-_lastUpdated", ["C", "A", "B", "D"])):
        bundle = stamped.bundle("Basic", f"_sort={sort}")
        assert [e["resource"]["id"] for e in bundle["entry"]] == order


@pytest.fixture
def subjects(engine):
    engine.put({"resourceType": "Patient", "id": "p1", "name": [{"family": "Ann"}]})
    engine.put({"resourceType": "Patient", "id": "p2", "name": [{"family": "Bob"}]})
    engine.put({"resourceType": "Group", "id": "g1", "type": "person", "actual": True})
    subject = {
        "O1": {"reference": "Patient/p1"},
        "O2": {"reference": "Group/g1"},
        "O3": {"type": "Patient", "identifier": {"system": "urn:mrn", "value": "42"}},
        "O4": {"reference": f"{BASE}/Patient/p1"},
        "O5": {"reference": "Patient/p2/_history/1"},
        "O6": {"reference": "urn:uuid:6d1e5e3c-3f2a-4c55-9a4a-0c0d3b0a9f00"},
    }
    for oid, ref in subject.items():
        engine.put({"resourceType": "Observation", "id": oid, "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": oid}]}, "subject": ref})
    return engine


@pytest.mark.parametrize("query,expected", [
    ("patient=p1", {"O1", "O4"}),
    ("patient=Patient/p1", {"O1", "O4"}),
    (f"patient={BASE}/Patient/p1", {"O1", "O4"}),
    ("patient=p2", {"O5"}),
    ("patient=g1", set()),  # a Group subject is not a patient
    ("subject=g1", {"O2"}),
    ("patient:missing=true", {"O2", "O6"}),  # O3's logical reference is typed Patient: a value
    ("subject:missing=true", set()),
    ("patient:identifier=urn:mrn|42", {"O3"}),
    ("patient.name=Bob", {"O5"}),
    ("patient.name=Ann&code=http://loinc.org|O4", {"O4"}),
])
def test_a_reference_alias_finds_its_base_references_of_its_type(subjects, query, expected):
    assert subjects.ids("Observation", query) == expected


def test_reverse_chains_and_includes_follow_the_alias(subjects):
    assert subjects.ids("Patient", "_has:Observation:patient:code=http://loinc.org|O5") == {"p2"}
    included = subjects.bundle("Observation", "_id=O1,O2&_include=Observation:patient")
    assert {(e["resource"]["id"], e["search"]["mode"]) for e in included["entry"]} == \
        {("O1", "match"), ("O2", "match"), ("p1", "include")}
    reverse = subjects.bundle("Patient", "_id=p2&_revinclude=Observation:patient")
    assert {(e["resource"]["id"], e["search"]["mode"]) for e in reverse["entry"]} == \
        {("p2", "match"), ("O5", "include")}


def test_neither_kind_has_index_rows(subjects):
    with subjects.db.read() as conn:
        aliases = conn.exec_driver_sql(
            "SELECT count(*) FROM search_reference WHERE resource_type = 'Observation' AND param = 'patient'")
        last_updated = conn.exec_driver_sql("SELECT count(*) FROM search_date WHERE param = '_lastUpdated'")
        assert (aliases.scalar_one(), last_updated.scalar_one()) == (0, 0)
        subject_rows = conn.execute(sa.text(
            "SELECT count(*) FROM search_reference WHERE resource_type = 'Observation' AND param = 'subject'"))
        assert subject_rows.scalar_one() == 5  # O1, O2, O4, O5, O6; O3 has only an identifier


@pytest.mark.parametrize("extra", ["", "&code:text=x"])  # the text SQL, and the SQLAlchemy path :text takes
def test_pages_sorted_by_last_updated_walk_forward_and_back(stamped, extra):
    query = f"_sort=-_lastUpdated{extra}&_count=1"
    seen, bundle = [], stamped.bundle("Basic", query)
    while True:
        seen += [e["resource"]["id"] for e in bundle["entry"]]
        nxt = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        if not nxt:
            break
        bundle = stamped.bundle("Basic", f"{query}&_page={nxt[0].split('_page=')[1]}")
    assert seen == ["C", "A", "B", "D"]
    prev = [link["url"] for link in bundle["link"] if link["relation"] == "previous"][0].split("_page=")[1]
    assert [e["resource"]["id"] for e in stamped.bundle("Basic", f"{query}&_page={prev}")["entry"]] == ["B"]


@pytest.mark.parametrize("sort", ["-created", "_lastUpdated", "_lastUpdated&code:text=x", "-_id"])
@pytest.mark.parametrize("key", ["x", 5, None, [1], 2**70, True])
def test_a_forged_page_token_is_a_400_not_a_database_error(stamped, sort, key):
    import base64
    import json

    from ipt_fhir.fhir.outcome import FHIRError

    token = base64.urlsafe_b64encode(json.dumps({"k": [key, "Basic", "A"], "d": "n"}).encode()).decode()
    accepted = {"-created": (5,)}.get(sort, ("x",))
    try:
        stamped.bundle("Basic", f"_sort={sort}&_count=1&_page={token.rstrip('=')}")
    except FHIRError as exc:
        assert exc.status == 400 and key not in accepted
    else:
        assert key in accepted


def test_every_alias_searches_sorts_includes_and_chains_without_a_server_error(subjects):
    """All 47 aliases through each SQL shape that reads reference rows; a refusal must be a 4xx."""
    from ipt_fhir.fhir.outcome import FHIRError
    from ipt_fhir.fhir.search.registry import registry

    shapes = ["{c}=x", "{c}:missing=true", "_sort=-{c}", "_include={rt}:{c}", "_revinclude={rt}:{c}",
              "{c}.name=x", "{c}:identifier=a|b", "{c}={t}/x&_sort=-_lastUpdated"]
    for rt, aliases in sorted(registry().aliases.items()):
        for code, (_base, target) in aliases.items():
            queries = [(rt, s.format(c=code, rt=rt, t=target)) for s in shapes]
            for searched, query in queries + [(target, f"_has:{rt}:{code}:_id=x")]:
                try:
                    subjects.bundle(searched, query)
                except FHIRError as exc:
                    assert exc.status < 500, (searched, query, exc)


def test_a_chain_to_ids_takes_the_sqlalchemy_path_too(subjects):
    """`:text` is built by SQLAlchemy rather than as text; a chain on `_id` there once wrote VALUES
    with named columns, which SQLite refuses (a 500 found by the search fuzzer)."""
    subjects.put({"resourceType": "Observation", "id": "O7", "status": "final", "code": {"text": "mood"},
                  "subject": {"reference": "Patient/p2"}})
    assert subjects.ids("Observation", "patient._id=p1,p2&code:text=mood") == {"O7"}
    assert subjects.ids("Observation", "patient._id=p1&code:text=mood") == set()
    assert subjects.ids("Observation", "subject._id=p2,g1&code:text=mood") == {"O7"}


@pytest.mark.parametrize("key", [2**63, -2**63 - 1, float("inf"), float("nan"), "x"])
def test_a_forged_number_sort_key_is_a_400_too(engine, key):
    """A number or quantity sort key past what the database binds (an int beyond 64 bits was a 500)."""
    import base64
    import json

    from ipt_fhir.fhir.outcome import FHIRError

    engine.put({"resourceType": "Observation", "id": "o", "status": "final", "code": {"text": "x"},
                "valueQuantity": {"value": 5}})
    token = base64.urlsafe_b64encode(json.dumps({"k": [key, "Observation", "o"], "d": "n"}).encode()).decode()
    with pytest.raises(FHIRError) as exc:
        engine.bundle("Observation", f"_sort=value-quantity&_count=1&_page={token.rstrip('=')}")
    assert exc.value.status == 400
    token = base64.urlsafe_b64encode(json.dumps({"k": [4.5, "Observation", "a"], "d": "n"}).encode()).decode()
    assert engine.bundle("Observation", f"_sort=value-quantity&_count=1&_page={token.rstrip('=')}")["entry"]
