"""Date search: the prefix table of http://hl7.org/fhir/R4/search.html#prefix, worked by hand on
ranges ([low, high) of each value at its precision; open Period ends are unbounded)."""
from __future__ import annotations

import pytest


@pytest.fixture
def patients(engine):
    for pid, bd in (("A", "1974-12-25"), ("B", "1974-12"), ("C", "1974"), ("D", "1975-01-01")):
        engine.put({"resourceType": "Patient", "id": pid, "birthDate": bd})
    return engine


@pytest.mark.parametrize("query,expected", [
    ("eq1974-12", {"A", "B"}),
    ("1974-12", {"A", "B"}),
    ("ne1974-12", {"C", "D"}),
    ("gt1974-12", {"D"}),
    ("lt1974-12", {"C"}),
    ("ge1974-12", {"A", "B", "D"}),
    ("le1974-12", {"A", "B", "C"}),
    ("sa1974-12", {"D"}),
    ("eb1974-12", set()),
    ("eq1974", {"A", "B", "C"}),
    ("eq1974-12-25", {"A"}),
    ("ap1974-12-25", {"A", "B", "C", "D"}),
    ("lt1974-12-25T10:00:00Z", {"A", "B", "C"}),
])
def test_birthdate_prefixes_follow_the_spec_range_table(patients, query, expected):
    assert patients.ids("Patient", [("birthdate", query)]) == expected


@pytest.fixture
def observations(engine):
    obs = {
        "E1": {"effectiveDateTime": "2025-03-04T10:00:00Z"},
        "E2": {"effectivePeriod": {"start": "2025-03-01", "end": "2025-03-31"}},
        "E3": {"effectivePeriod": {"start": "2025-03-10"}},
        "E4": {"effectiveInstant": "2025-03-04T10:00:00.000Z"},
        "E5": {"effectiveDateTime": "2025-03-04T12:00:00+02:00"},
    }
    for oid, eff in obs.items():
        engine.put({"resourceType": "Observation", "id": oid, "status": "final",
                    "code": {"text": "x"}, **eff})
    return engine


@pytest.mark.parametrize("query,expected", [
    ("eq2025-03-04", {"E1", "E4", "E5"}),
    ("ge2025-03-05", {"E2", "E3"}),
    ("lt2025-03-05", {"E1", "E2", "E4", "E5"}),
    ("sa2025-03-05", {"E3"}),
    ("eb2025-03-05", {"E1", "E4", "E5"}),
    ("gt2025-04", {"E3"}),
    ("eq2025-03", {"E1", "E2", "E4", "E5"}),
    ("eq2025-03-04T10:00", {"E1", "E4", "E5"}),
    ("eq2025-03-04T10:00:00Z", {"E1", "E4", "E5"}),
    ("ne2025-03", {"E3"}),
])
def test_observation_effective_x_uses_range_overlap(observations, query, expected):
    assert observations.ids("Observation", [("date", query)]) == expected


@pytest.fixture
def encounters(engine):
    periods = {
        "P1": {"start": "2025-01-10T09:00:00Z", "end": "2025-01-10T10:00:00Z"},
        "P2": {"start": "2025-02-01"},
        "P3": {"end": "2024-12-31"},
    }
    for eid, period in periods.items():
        engine.put({"resourceType": "Encounter", "id": eid, "status": "finished",
                    "class": {"code": "AMB"}, "period": period})
    return engine


@pytest.mark.parametrize("query,expected", [
    ("ge2025-01-01", {"P1", "P2"}),
    ("lt2025-01-01", {"P3"}),
    ("eq2025-01-10", {"P1"}),
    ("ne2025-01-10", {"P2", "P3"}),
    ("gt2030", {"P2"}),
    ("sa2025-01-31", {"P2"}),
    ("eb2025-01-01", {"P3"}),
    ("le2024-06", {"P3"}),
])
def test_encounter_period_closed_and_open_ended(encounters, query, expected):
    assert encounters.ids("Encounter", [("date", query)]) == expected


def test_and_of_two_dates_is_a_range(encounters):
    assert encounters.ids("Encounter", [("date", "ge2025-01-01"), ("date", "le2025-01-31")]) == {"P1"}


# Outside the R4 grammar (datatypes.html#dateTime, search.html#date "minutes SHALL be present if an hour is
# present"): an hour alone, hour 24, an offset beyond ±14:00 or with 60 minutes. Each used to match as if valid.
@pytest.mark.parametrize("bad", ["2025-13-01", "xx2025", "2025-1", "tomorrow", "2025-02-30", "2025-01-10T10Z",
                                 "2025-01-10T10+01:00", "ge2025-01-10T24:00:00Z", "2025-01-10T10:00:00+25:00",
                                 "2025-01-10T10:00:00+14:30", "2025-01-10T10:00:00-03:60"])
def test_malformed_date_is_400(encounters, bad):
    from ipt_fhir.fhir.outcome import FHIRError

    with pytest.raises(FHIRError) as exc:
        encounters.ids("Encounter", [("date", bad)])
    assert exc.value.status == 400
    assert exc.value.issues[0].expression == ("date",)
    if bad in ("xx2025", "tomorrow"):  # lowercase letters first, but no prefix: the value is what is wrong
        assert exc.value.issues[0].diagnostics.startswith(f"Invalid date value in date={bad}")


@pytest.fixture
def leap_seconds(engine):
    """datatypes.html: dateTime and instant allow a 60th second, a leap second (the last of 2016 here)."""
    for oid, eff in (("L1", {"effectiveDateTime": "2016-12-31T23:59:60Z"}),
                     ("L2", {"effectiveInstant": "2016-12-31T23:59:60.5Z"}),
                     ("L3", {"effectiveDateTime": "2016-12-31T18:59:60-05:00"}),  # the same second
                     ("N", {"effectiveDateTime": "2017-01-01T00:00:00Z"})):
        engine.put({"resourceType": "Observation", "id": oid, "status": "final", "code": {"text": "x"}, **eff})
    return engine


@pytest.mark.parametrize("query,expected", [
    ("eq2016-12-31", {"L1", "L2", "L3"}),
    ("eq2016-12", {"L1", "L2", "L3"}),
    ("eq2016-12-31T23:59Z", {"L1", "L2", "L3"}),
    ("eq2017-01-01", {"N"}),
    ("lt2017-01-01T00:00:00Z", {"L1", "L2", "L3"}),
    ("ge2017", {"N"}),
    ("eq2016-12-31T23:59:60Z", {"L1", "L2", "L3"}),  # a search value may name the leap second too
])
def test_a_leap_second_is_found_on_its_own_day(leap_seconds, query, expected):
    """It is the last second of its day: indexed as the second it follows (59), not as the next midnight."""
    assert leap_seconds.ids("Observation", [("date", query)]) == expected


@pytest.mark.parametrize("edge,expected", [("le2025-01-10T10:00:00+14:00", {"P3"}), ("ge2025-01-10T10:00:00-14:00", {"P2"})])
def test_offsets_at_the_grammar_limits_are_taken(encounters, edge, expected):
    assert encounters.ids("Encounter", [("date", edge)]) == expected
