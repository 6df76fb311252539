"""An instant is a point in time, not a range of its written precision (search.html#date: "An instant is
considered a fixed point in time with an interval smaller than the precision of the system, i.e. an
interval with an effective width of 0"). Indexed as [t, t + 1 microsecond): choice elements of type
instant (Observation.effectiveInstant) and plain instant elements (DiagnosticReport.issued,
AuditEvent.recorded) alike; a dateTime written with the same text still covers its whole second.
"""
from __future__ import annotations

import pytest

from ipt_fhir.fhir.search.indexer import index_rows
from ipt_fhir.fhir.search.values import date_range

AT = "2013-04-02T11:00:00Z"
T = date_range(AT)[0]


@pytest.fixture
def stored(engine):
    engine.put({"resourceType": "Observation", "id": "instant", "status": "final", "code": {"text": "x"},
                "effectiveInstant": AT})
    engine.put({"resourceType": "Observation", "id": "datetime", "status": "final", "code": {"text": "x"},
                "effectiveDateTime": AT})
    engine.put({"resourceType": "DiagnosticReport", "id": "report", "status": "final", "code": {"text": "x"},
                "issued": AT})
    engine.put({"resourceType": "AuditEvent", "id": "audit", "type": {"code": "rest"}, "recorded": AT,
                "agent": [{"requestor": True}], "source": {"observer": {"display": "x"}}})
    return engine


@pytest.mark.parametrize("query, instant_matches, datetime_matches", [
    ("gt2013-04-02T11:00:00.500Z", False, True),   # inside the dateTime's second, after the instant
    ("ge2013-04-02T11:00:00.500Z", False, True),
    ("eq2013-04-02T11:00:00.000Z", True, False),   # the instant's millisecond; the dateTime is wider
    ("eb2013-04-02T11:00:00.001Z", True, False),
    ("eq2013-04-02T11:00:00Z", True, True),
    ("eq2013-04-02T11:00Z", True, True),
    ("2013-04-02", True, True),
    ("lt2013-04-02T11:00:00.001Z", True, True),
    ("ne2013-04-02T11:00:00.000Z", False, True),
    ("gt2013-04-02T11:00:00Z", False, False),
    ("lt2013-04-02T11:00:00Z", False, False),
])
def test_an_instant_is_a_point_and_a_datetime_its_second(stored, query, instant_matches, datetime_matches):
    expected = {"instant"} if instant_matches else set()
    expected |= {"datetime"} if datetime_matches else set()
    assert stored.ids("Observation", [("date", query)]) == expected


@pytest.mark.parametrize("resource_type, param", [("DiagnosticReport", "issued"), ("AuditEvent", "date")])
def test_plain_instant_elements_are_points_too(stored, resource_type, param):
    assert stored.ids(resource_type, [(param, "eq2013-04-02T11:00:00.000Z")]) != set()
    assert stored.ids(resource_type, [(param, "gt2013-04-02T11:00:00.500Z")]) == set()


def test_index_rows_of_instants_are_one_microsecond_wide():
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "effectiveInstant": AT,
           "issued": AT}
    assert index_rows("Observation", obs)["date"] == [("date", T, T + 1)]
    report = {"resourceType": "DiagnosticReport", "status": "final", "code": {"text": "x"}, "issued": AT,
              "effectiveDateTime": AT}
    assert sorted(index_rows("DiagnosticReport", report)["date"]) == [("date", T, T + 1_000_000),
                                                                      ("issued", T, T + 1)]
