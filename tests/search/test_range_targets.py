"""Number and quantity search on Range targets (search.html#prefix): the search value's range against the
target's whole range [low, high], not against its two ends as separate points; a missing end unbounded.

Each case runs through the text SQL and, beside a `:text` clause (which only the SQLAlchemy builder
handles), through the SQLAlchemy builder: the same answer from both. Cases are grouped by prefix; each
group holds at least one case that the old two-point index answered wrongly.
"""
from __future__ import annotations

import pytest

UCUM = "http://unitsofmeasure.org"
BUILDERS = ["", "&_tag:text=ranges"]  # text SQL; SQLAlchemy (TextSql leaves :text to it)
TAG = {"system": "urn:test", "code": "ranges", "display": "ranges"}


def _age(value: float) -> dict:
    return {"value": value, "system": UCUM, "code": "a", "unit": "years"}


ONSETS = {  # Condition id -> onset
    "range5to15": {"onsetRange": {"low": _age(5), "high": _age(15)}},
    "narrow": {"onsetRange": {"low": _age(9.6), "high": _age(10.4)}},  # inside [9.5, 10.5), not [9.95, 10.05)
    "from20": {"onsetRange": {"low": _age(20)}},  # 20 years or more
    "upto3": {"onsetRange": {"high": _age(3)}},  # 3 years or less
    "age10": {"onsetAge": _age(10)},  # a point: searched as before
    "emptyrange": {"onsetRange": {}},  # no bound: no value
    "noonset": {},
}


@pytest.fixture
def targets(engine):
    for cid, onset in ONSETS.items():
        engine.put({"resourceType": "Condition", "id": cid, "subject": {"reference": "Patient/p"},
                    "meta": {"tag": [TAG]}, **onset})
    for rid, prediction in (("range", {"probabilityRange": {"low": {"value": 0.2}, "high": {"value": 0.4}}}),
                            ("point", {"probabilityDecimal": 0.3}),
                            ("below", {"probabilityRange": {"high": {"value": 0.1}}}),  # 0.1 or less
                            ("none", {"outcome": {"text": "relapse"}})):
        engine.put({"resourceType": "RiskAssessment", "id": rid, "status": "final", "meta": {"tag": [TAG]},
                    "subject": {"reference": "Patient/p"}, "prediction": [prediction]})
    age = {"system": "http://terminology.hl7.org/CodeSystem/usage-context-type", "code": "age"}
    for vid, value in (("adults", {"valueRange": {"low": _age(18), "high": _age(65)}}),
                       ("elderly", {"valueRange": {"low": _age(65)}}),
                       ("forty", {"valueQuantity": _age(40)})):
        engine.put({"resourceType": "ValueSet", "id": vid, "status": "active", "meta": {"tag": [TAG]},
                    "useContext": [{"code": age, **value}]})
    return engine


# A search value's range: `10` is [9.5, 10.5), `10.0` [9.95, 10.05), `0.3` [0.25, 0.35).
CASES = {
    "eq: the search range fully contains the target range": [
        ("Condition", "onset-age=10", {"age10", "narrow"}),
        ("Condition", "onset-age=10.0", {"age10"}),  # [9.95, 10.05) does not contain 9.6-10.4
        ("Condition", "onset-age=1e1", {"age10", "narrow"}),  # [9.5, 10.5)
        ("Condition", "onset-age=5", set()),  # the low end alone is not the range 5-15
        ("Condition", "onset-age=15", set()),
        ("RiskAssessment", "probability=0.3", {"point"}),  # [0.25, 0.35) does not contain 0.2-0.4
        ("ValueSet", "context-quantity=18", set()),
        ("ValueSet", "context-quantity=40", {"forty"}),
        ("ValueSet", "context-type-quantity=age$18", set()),
    ],
    "ne: it does not (an open range is contained by no search range)": [
        ("Condition", "onset-age=ne10", {"range5to15", "from20", "upto3"}),
        ("Condition", "onset-age=ne20", {"range5to15", "narrow", "age10", "from20", "upto3"}),
        ("RiskAssessment", "probability=ne0.3", {"range", "below"}),
        ("RiskAssessment", "probability=0.3&probability=ne0.3", set()),
    ],
    "gt: the target meets the range above exactly the value": [
        ("Condition", "onset-age=gt15", {"from20"}),  # 5-15 ends at 15, not above it
        ("Condition", "onset-age=gt12", {"range5to15", "from20"}),
        ("Condition", "onset-age=gt100", {"from20"}),  # unbounded above
        ("RiskAssessment", "probability=gt0.35", {"range"}),
        ("RiskAssessment", "probability=gt0.4", set()),
        ("ValueSet", "context-quantity=gt60", {"adults", "elderly"}),
        ("ValueSet", "context-type-quantity=age$gt60", {"adults", "elderly"}),
        ("ValueSet", "context-type-quantity=gender$gt60", set()),
    ],
    "ge: the same, the value itself included": [
        ("Condition", "onset-age=ge15", {"range5to15", "from20"}),
        ("Condition", "onset-age=ge100", {"from20"}),
        ("RiskAssessment", "probability=ge0.4", {"range"}),
    ],
    "lt: the target meets the range below exactly the value": [
        ("Condition", "onset-age=lt5", {"upto3"}),  # 5-15 starts at 5
        ("Condition", "onset-age=lt0", {"upto3"}),  # unbounded below
        ("Condition", "onset-age=lt10.4", {"range5to15", "narrow", "age10", "upto3"}),
        ("RiskAssessment", "probability=lt0.2", {"below"}),
        ("RiskAssessment", "probability=lt0.05", {"below"}),
        ("ValueSet", "context-quantity=lt20", {"adults"}),
        ("ValueSet", "context-type-quantity=age$lt20", {"adults"}),
    ],
    "le: the same, the value itself included": [
        ("Condition", "onset-age=le5", {"range5to15", "upto3"}),
        ("Condition", "onset-age=le3", {"upto3"}),
        ("Condition", "onset-age=le-1", {"upto3"}),
        ("RiskAssessment", "probability=le0.2", {"range", "below"}),
    ],
    "sa: no overlap with the search range, wholly above it": [
        ("Condition", "onset-age=sa10", {"from20"}),  # 5-15 overlaps [9.5, 10.5)
        ("Condition", "onset-age=sa4", {"range5to15", "narrow", "age10", "from20"}),  # 5 >= 4.5
        ("Condition", "onset-age=sa5", {"narrow", "age10", "from20"}),  # 5 is inside [4.5, 5.5)
        ("RiskAssessment", "probability=sa0.1", {"range", "point"}),  # 0.2 >= 0.15
        ("RiskAssessment", "probability=sa0.2", {"point"}),  # 0.2 is inside [0.15, 0.25)
        ("ValueSet", "context-quantity=sa65", set()),  # 65 is inside [64.5, 65.5)
        ("ValueSet", "context-quantity=sa64", {"elderly"}),
    ],
    "eb: no overlap with the search range, wholly below it": [
        ("Condition", "onset-age=eb10", {"upto3"}),
        ("Condition", "onset-age=eb16", {"range5to15", "narrow", "age10", "upto3"}),  # 15 < 15.5
        ("Condition", "onset-age=eb15", {"narrow", "age10", "upto3"}),  # 15 is inside [14.5, 15.5)
        ("RiskAssessment", "probability=eb0.2", {"below"}),  # 0.1 < 0.15
    ],
    "ap: the target meets the value ± 10%": [
        ("Condition", "onset-age=ap10", {"range5to15", "narrow", "age10"}),  # [9, 11]
        ("Condition", "onset-age=ap2", {"upto3"}),
        ("RiskAssessment", "probability=ap0.43", {"range"}),  # 0.2-0.4 meets [0.387, 0.473]; 0.3 does not
        ("ValueSet", "context-type-quantity=age$ap40", {"adults", "forty"}),
    ],
    "units: those of the Range's ends, coded or as written": [
        ("Condition", f"onset-age=gt100|{UCUM}|a", {"from20"}),
        ("Condition", "onset-age=gt100||years", {"from20"}),
        ("Condition", f"onset-age=gt12|{UCUM}|mo", set()),
        ("ValueSet", f"context-quantity=ge100|{UCUM}|a", {"elderly"}),
    ],
    ":missing: a Range without a bound has no value": [
        ("Condition", "onset-age:missing=true", {"emptyrange", "noonset"}),
        ("Condition", "onset-age:missing=false", {"range5to15", "narrow", "from20", "upto3", "age10"}),
        ("RiskAssessment", "probability:missing=true", {"none"}),
        ("RiskAssessment", "probability:missing=false", {"range", "point", "below"}),
    ],
    "OR of values, AND of clauses": [
        ("Condition", "onset-age=lt0,gt100", {"upto3", "from20"}),
        ("Condition", "onset-age=ge15&onset-age=le5", {"range5to15"}),
    ],
}


@pytest.mark.parametrize("builder", BUILDERS)
@pytest.mark.parametrize("group", CASES)
def test_prefixes_compare_the_search_range_with_the_target_range(targets, group, builder):
    wrong = {query: found for rt, query, expected in CASES[group]
             if (found := targets.ids(rt, query + builder)) != expected}
    assert wrong == {}


def test_a_created_open_range_is_found_over_http(client):
    """Through the write path of creates (on SQLite its rows wait as JSON in search_pending first): the
    unbounded end survives as the largest double."""
    created = client.post("/fhir/Condition", json={"resourceType": "Condition", "subject": {"reference": "Patient/p"},
                                                   "onsetRange": {"low": _age(20)}})
    assert created.status_code == 201, created.text
    found = client.get("/fhir/Condition?onset-age=gt1e300").json()
    assert [e["resource"]["id"] for e in found["entry"]] == [created.json()["id"]]
    assert client.get("/fhir/Condition?onset-age=lt20").json()["total"] == 0


@pytest.mark.parametrize("builder", BUILDERS)
def test_sa_and_eb_on_a_point_exclude_the_search_values_own_range(targets, builder):
    """A point is the range [n, n]: `sa10` ([9.5, 10.5)) does not find 10.2, which lies inside that range,
    although 10.2 > 10; it finds 10.5. `eb10` likewise does not find 9.7."""
    for cid, years in (("ten-two", 10.2), ("ten-five", 10.5), ("nine-seven", 9.7), ("nine-four", 9.4)):
        targets.put({"resourceType": "Condition", "id": cid, "subject": {"reference": "Patient/p"},
                     "meta": {"tag": [TAG]}, "onsetAge": _age(years)})
    assert targets.ids("Condition", "onset-age=sa10" + builder) == {"ten-five", "from20"}
    assert targets.ids("Condition", "onset-age=eb10" + builder) == {"nine-four", "upto3"}
    assert targets.ids("Condition", "onset-age=gt10" + builder) >= {"ten-two", "ten-five"}


# Number/quantity prefixes at the exact edges of the search value's implicit range [lo, hi)
# (search.html#prefix): `10` is [9.5, 10.5), so 9.5 lies inside it and 10.5 outside it.
EDGES = {  # Condition id -> onset
    "point-9.5": {"onsetAge": _age(9.5)},  # the lower edge: inside [9.5, 10.5)
    "point-10.5": {"onsetAge": _age(10.5)},  # the upper edge: outside
    "range-9.6-10.5": {"onsetRange": {"low": _age(9.6), "high": _age(10.5)}},  # ends on the open edge
    "range-9-9.5": {"onsetRange": {"low": _age(9), "high": _age(9.5)}},  # ends on the closed lower edge
    "point-10.9": {"onsetAge": _age(10.9)},  # within 10 +- 10%
    "point-11.5": {"onsetAge": _age(11.5)},  # beyond it
}


@pytest.fixture
def edges(targets):
    for cid, onset in EDGES.items():
        targets.put({"resourceType": "Condition", "id": cid, "subject": {"reference": "Patient/p"},
                     "meta": {"tag": [TAG]}, **onset})
    return targets


@pytest.mark.parametrize("builder", BUILDERS)
def test_eq_and_ne_treat_the_upper_edge_of_the_search_range_as_outside(edges, builder):
    found = edges.ids("Condition", "onset-age=10" + builder)
    assert found & set(EDGES) == {"point-9.5"}  # 10.5 and a range reaching 10.5 are not within [9.5, 10.5)
    found = edges.ids("Condition", "onset-age=ne10" + builder)
    assert found & set(EDGES) == set(EDGES) - {"point-9.5"}


@pytest.mark.parametrize("builder", BUILDERS)
def test_eb_and_sa_exclude_targets_touching_the_lower_edge_and_include_the_upper_one(edges, builder):
    assert edges.ids("Condition", "onset-age=eb10" + builder) & set(EDGES) == set()  # 9.5 meets [9.5, 10.5)
    above = {"point-10.5", "point-10.9", "point-11.5"}
    assert edges.ids("Condition", "onset-age=sa10" + builder) & set(EDGES) == above


@pytest.mark.parametrize("builder", BUILDERS)
def test_ap_uses_the_documented_ten_percent_margin(edges, builder):
    found = edges.ids("Condition", "onset-age=ap10" + builder) & set(EDGES)
    # [9, 11]: 11.5 is not near
    assert found == {"point-9.5", "point-10.5", "range-9.6-10.5", "range-9-9.5", "point-10.9"}


@pytest.mark.parametrize("builder", BUILDERS)
def test_both_builders_sort_a_range_by_its_low_end_and_descending_by_its_high_end(targets, builder):
    def order(sort: str) -> list[str]:
        bundle = targets.bundle("RiskAssessment", f"_sort={sort}{builder}")
        return [e["resource"]["id"] for e in bundle["entry"]]

    assert order("probability") == ["below", "range", "point", "none"]  # unbounded, 0.2, 0.3; none last
    assert order("-probability") == ["range", "point", "below", "none"]  # 0.4, 0.3, 0.1
