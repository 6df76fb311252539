"""Result shaping: includes, paging (stable under concurrent inserts), _sort, _total, _summary, _elements,
unknown-parameter handling."""
from __future__ import annotations

import pytest

from ipt_fhir.fhir.outcome import FHIRError


@pytest.fixture
def plans(engine):
    engine.put({"resourceType": "Patient", "id": "p1", "name": [{"family": "Ng"}]})
    engine.put({"resourceType": "Goal", "id": "g1", "lifecycleStatus": "active", "description": {"text": "a"},
                "subject": {"reference": "Patient/p1"}})
    engine.put({"resourceType": "Goal", "id": "g2", "lifecycleStatus": "active", "description": {"text": "b"},
                "subject": {"reference": "Patient/p1"}})
    for cid, goals in (("cp1", ["g1", "g2"]), ("cp2", ["g1"])):
        engine.put({"resourceType": "CarePlan", "id": cid, "status": "active", "intent": "plan",
                    "subject": {"reference": "Patient/p1"}, "goal": [{"reference": f"Goal/{g}"} for g in goals],
                    "category": [{"coding": [{"system": "http://example.org/cat", "code": "ipt"}]}]})
    engine.put({"resourceType": "Provenance", "id": "prov", "target": [{"reference": "CarePlan/cp1"}],
                "recorded": "2025-01-01T00:00:00Z", "agent": [{"who": {"reference": "Patient/p1"}}]})
    return engine


def _modes(bundle):
    return sorted((e["search"]["mode"], e["resource"]["resourceType"], e["resource"].get("id")) for e in bundle["entry"])


def test_include_adds_each_target_once_with_mode_include(plans):
    b = plans.bundle("CarePlan", "patient=p1&_include=CarePlan:goal")
    assert _modes(b) == [("include", "Goal", "g1"), ("include", "Goal", "g2"),
                         ("match", "CarePlan", "cp1"), ("match", "CarePlan", "cp2")]
    assert b["total"] == 2


def test_revinclude_and_iterate(plans):
    b = plans.bundle("CarePlan", "_id=cp1&_revinclude=Provenance:target")
    assert ("include", "Provenance", "prov") in _modes(b)
    b = plans.bundle("CarePlan", "_id=cp2&_include=CarePlan:goal&_include:iterate=Goal:subject")
    assert ("include", "Patient", "p1") in _modes(b)
    b = plans.bundle("CarePlan", "_id=cp2&_include=CarePlan:goal&_include=Goal:subject")
    assert ("include", "Patient", "p1") not in _modes(b)  # without :iterate it is not applied to includes
    b = plans.bundle("CarePlan", "_id=cp2&_include=*")
    assert {("include", "Goal", "g1"), ("include", "Patient", "p1")} <= set(_modes(b))


def test_an_iteration_stopped_by_the_servers_limit_is_reported(engine):
    """A chain of references longer than the iterations the server makes is cut, and the Bundle says so
    (a warning with search.mode outcome) instead of looking complete."""
    from ipt_fhir.services.search import MAX_INCLUDE_ITERATIONS

    length = MAX_INCLUDE_ITERATIONS + 3
    for i in range(length):
        org = {"resourceType": "Organization", "id": f"o{i}", "name": f"Org {i}"}
        if i + 1 < length:
            org["partOf"] = {"reference": f"Organization/o{i + 1}"}
        engine.put(org)
    b = engine.bundle("Organization", "_id=o0&_include:iterate=Organization:partof")
    included = [e for e in b["entry"] if e["search"]["mode"] == "include"]
    assert len(included) == MAX_INCLUDE_ITERATIONS + 1
    outcome = [e["resource"] for e in b["entry"] if e["search"]["mode"] == "outcome"]
    assert outcome and "stop after" in outcome[0]["issue"][0]["diagnostics"]
    for start in (length - 3, length - MAX_INCLUDE_ITERATIONS - 2):  # ends within the limit, or at it exactly
        b = engine.bundle("Organization", f"_id=o{start}&_include:iterate=Organization:partof")
        assert [e["search"]["mode"] for e in b["entry"]].count("outcome") == 0, start
        assert len([e for e in b["entry"] if e["search"]["mode"] == "include"]) == length - 1 - start


def test_us_core_style_careplan_query(plans):
    assert plans.ids("CarePlan", "patient=p1&category=http://example.org/cat|ipt&status=active") == {"cp1", "cp2"}
    assert plans.ids("CarePlan", "patient=p1&category=ipt&status=completed") == set()


def test_unknown_parameter_is_reported_then_strict_rejects(plans):
    b = plans.bundle("CarePlan", "patient=p1&bogus=1")
    outcome = [e for e in b["entry"] if e["search"]["mode"] == "outcome"]
    assert outcome and "bogus" in outcome[0]["resource"]["issue"][0]["diagnostics"]
    with pytest.raises(FHIRError) as exc:
        plans.bundle("CarePlan", "patient=p1&bogus=1", strict=True)
    assert exc.value.status == 400
    b = plans.bundle("CarePlan", "_text=x")
    assert [e for e in b["entry"] if e["search"]["mode"] == "outcome"]


def test_summary_count_elements_total(plans):
    b = plans.bundle("CarePlan", "_summary=count")
    assert b["total"] == 2 and "entry" not in b
    b = plans.bundle("CarePlan", "_elements=status&_id=cp1")
    res = b["entry"][0]["resource"]
    assert "goal" not in res and res["status"] == "active"
    assert any(t["code"] == "SUBSETTED" for t in res["meta"]["tag"])
    b = plans.bundle("CarePlan", "_summary=true&_id=cp1")
    res = b["entry"][0]["resource"]
    assert "subject" in res and "goal" not in res  # CarePlan.subject is a summary element, goal is not
    b = plans.bundle("CarePlan", "_total=none")
    assert "total" not in b
    b = plans.bundle("CarePlan", "_summary=count&_total=none")  # the count is what was asked for
    assert b["total"] == 2 and "entry" not in b
    assert "total" not in plans.bundle("CarePlan", "_count=0&_total=none")


def test_summary_true_keeps_summary_elements_at_every_depth(engine):
    engine.put({"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "bp"},
                "extension": [{"url": "http://example.org/x", "valueString": "top"}],
                "component": [{"code": {"text": "sys"}, "valueQuantity": {"value": 120},
                               "interpretation": [{"text": "high"}]},
                              {"code": {"text": "dia"}, "dataAbsentReason": {"text": "not done"}}]})
    engine.put({"resourceType": "DocumentReference", "id": "d1", "status": "current",
                "content": [{"attachment": {"contentType": "text/plain", "data": "aGVsbG8=", "title": "note"}}]})
    obs = engine.bundle("Observation", "_summary=true&_id=o1")["entry"][0]["resource"]
    # component is summary; its interpretation and dataAbsentReason are not (Observation.component.*)
    assert obs["component"] == [{"code": {"text": "sys"}, "valueQuantity": {"value": 120}}, {"code": {"text": "dia"}}]
    assert "extension" not in obs and obs["status"] == "final"
    doc = engine.bundle("DocumentReference", "_summary=true&_id=d1")["entry"][0]["resource"]
    assert doc["content"] == [{"attachment": {"contentType": "text/plain", "title": "note"}}]  # Attachment.data is not


@pytest.mark.parametrize("query", ["_sort:desc=family", "_sort:asc=family", "_count:exact=2"])
def test_result_parameters_take_no_modifier(engine, query):
    """R4 _sort has no modifiers (descending is `-param`): an STU3-style _sort:desc must not be sorted ascending."""
    with pytest.raises(FHIRError) as exc:
        engine.bundle("Patient", query)
    assert exc.value.status == 400 and query.split("=")[0] in exc.value.issues[0].diagnostics


def test_sort_several_keys(engine):
    for i, (fam, given) in enumerate([("b", "x"), ("a", "z"), ("a", "y"), ("c", "w")]):
        engine.put({"resourceType": "Patient", "id": f"s{i}", "name": [{"family": fam, "given": [given]}]})
    b = engine.bundle("Patient", "_sort=family,-given")
    assert [e["resource"]["id"] for e in b["entry"]] == ["s1", "s2", "s0", "s3"]
    b = engine.bundle("Patient", "_sort=-family")
    assert [e["resource"]["id"] for e in b["entry"]][0] == "s3"


def _follow(engine, rt, query, count, during=None):
    seen, pages = [], 0
    b = engine.bundle(rt, query + f"&_count={count}")
    while True:
        seen.extend(e["resource"]["id"] for e in b["entry"] if e["search"]["mode"] == "match")
        pages += 1
        if during:
            during(pages)
        nxt = [link["url"] for link in b["link"] if link["relation"] == "next"]
        if not nxt:
            return seen, b
        token = nxt[0].split("_page=")[1]
        b = engine.bundle(rt, query + f"&_count={count}&_page={token}")


@pytest.mark.parametrize("sort", ["", "&_sort=-date", "&_sort=_lastUpdated"])
def test_paging_250_matches_without_gap_or_duplicate_under_concurrent_inserts(engine, sort):
    for i in range(250):
        engine.put({"resourceType": "Observation", "id": f"o{i:03d}", "status": "final", "code": {"text": "x"},
                    "effectiveDateTime": f"2025-01-{1 + i % 28:02d}"})

    def insert_more(page):
        for k in range(5):
            engine.put({"resourceType": "Observation", "id": f"new{page}-{k}", "status": "final",
                        "code": {"text": "x"}, "effectiveDateTime": f"2025-01-{1 + (page * 7 + k) % 28:02d}"})

    seen, _ = _follow(engine, "Observation", "status=final" + sort, 20, insert_more)
    assert len(seen) == len(set(seen)), "duplicate across pages"
    assert {f"o{i:03d}" for i in range(250)} <= set(seen), "gap across pages"


def test_previous_link_walks_back(engine):
    for i in range(45):
        engine.put({"resourceType": "Patient", "id": f"pp{i:02d}", "gender": "other"})
    first = engine.bundle("Patient", "gender=other&_count=20")
    token = [link["url"] for link in first["link"] if link["relation"] == "next"][0].split("_page=")[1]
    second = engine.bundle("Patient", f"gender=other&_count=20&_page={token}")
    prev = [link["url"] for link in second["link"] if link["relation"] == "previous"][0].split("_page=")[1]
    back = engine.bundle("Patient", f"gender=other&_count=20&_page={prev}")
    assert [e["resource"]["id"] for e in back["entry"]] == [e["resource"]["id"] for e in first["entry"]]
    assert first["total"] == second["total"] == 45


SMALL_DATABASE_STATISTICS = {
    "sqlite_autoindex_resource_1": "31 5 1", "ix_resource_type_last_updated": "31 5 1",
    "ix_search_token_value": "87 18 4 3 2 1", "ix_search_token_res": "87 18 4 2",
    "ix_search_date_high": "15 4 3 1 1", "ix_search_date_res": "15 4 1 1", "ix_search_date_low": "15 4 3 1 1"}


def test_paging_a_sort_by_parameter_returns_every_match_once_in_order(engine, database):
    """A database whose planner statistics were gathered when it was small (as a new clinic's is) made
    SQLite 3.40 drop matches from pages sorted by a parameter: 162 of 165 Observations came back."""
    def observation(i: int, code: str) -> dict:
        return {"resourceType": "Observation", "id": f"o{code}{i}", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                "effectiveDateTime": f"20{10 + i % 12:02d}-{1 + i % 12:02d}-{1 + i % 27:02d}T0{i % 10}:00:00Z"}

    matching = {o["id"]: o for o in (observation(i, "8302-2") for i in range(120))}
    for o in matching.values():
        engine.put(o)
    for i in range(6):
        engine.put(observation(i, "other"))
    if database.dialect == "sqlite":  # the statistics of that database, gathered at 31 resources
        with database.write() as conn:
            conn.exec_driver_sql("ANALYZE")
            for index, stat in SMALL_DATABASE_STATISTICS.items():
                conn.exec_driver_sql("UPDATE sqlite_stat1 SET stat = ? WHERE idx = ?", (stat, index))
            conn.exec_driver_sql("ANALYZE sqlite_schema")  # reloads the statistics
    seen, last = _follow(engine, "Observation", "code=http://loinc.org|8302-2&_sort=-date", 6)
    assert last["total"] == 120
    assert sorted(seen) == sorted(matching)
    dates = [matching[rid]["effectiveDateTime"] for rid in seen]
    assert dates == sorted(dates, reverse=True)
