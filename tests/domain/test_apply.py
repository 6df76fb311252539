from __future__ import annotations

from datetime import date

import pytest

from ipt_fhir.domain.apply import apply_protocol, build_plan
from ipt_fhir.domain.canonical import session_number, session_phase
from ipt_fhir.domain.lookup import InMemoryLookup, resources_from_transaction
from ipt_fhir.domain.protocols import PROTOCOL_IDS, get_protocol
from ipt_fhir.domain.rules import check
from ipt_fhir.fhir.outcome import FHIRError
from ipt_fhir.fhir.validation import validate_resource

from .world import counter_ids

START = date(2025, 1, 6)  # Monday


def applied(protocol_id, **kw):
    kw.setdefault("new_id", counter_ids())
    return apply_protocol(protocol_id, "Patient/p1", "Practitioner/t1", START, **kw)


def by_type(bundle, rtype):
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


@pytest.mark.parametrize("protocol_id", PROTOCOL_IDS)
def test_apply_returns_a_linked_transaction_for_every_protocol(protocol_id):
    protocol = get_protocol(protocol_id)
    bundle = applied(protocol_id)
    assert bundle["type"] == "transaction"
    assert all(e["fullUrl"].startswith("urn:uuid:") and e["request"] == {"method": "POST", "url": e["resource"]["resourceType"]}
               for e in bundle["entry"])
    plan_url, sr_url = bundle["entry"][0]["fullUrl"], bundle["entry"][1]["fullUrl"]
    (plan,), (course,) = by_type(bundle, "CarePlan"), by_type(bundle, "ServiceRequest")
    sessions = by_type(bundle, "Encounter")

    assert plan["status"] == "active" and plan["intent"] == "plan"
    assert [c["coding"][0]["code"] for c in plan["category"]] == ["assess-plan", "718347000"]
    assert plan["instantiatesCanonical"] == [protocol.url()]
    assert plan["activity"][0]["reference"]["reference"] == sr_url
    assert plan["text"]["status"] == "generated"

    assert course["basedOn"] == [{"reference": plan_url}]
    assert course["code"]["coding"][0]["code"] == "443730003"
    assert course["quantityQuantity"]["value"] == protocol.typical_sessions == len(sessions)
    assert course["occurrenceTiming"]["repeat"]["count"] == len(sessions)

    assert [session_number(s) for s in sessions] == list(range(1, len(sessions) + 1))
    assert [session_phase(s) for s in sessions] == [protocol.phase_for(n, len(sessions)) for n in range(1, len(sessions) + 1)]
    assert all(s["status"] == "planned" and s["basedOn"] == [{"reference": sr_url}] for s in sessions)
    starts = [s["period"]["start"][:10] for s in sessions]
    assert starts == sorted(starts) and plan["period"]["start"] <= starts[0] and starts[-1] <= plan["period"]["end"]


@pytest.mark.parametrize("protocol_id", PROTOCOL_IDS)
def test_apply_output_is_valid_r4_and_passes_the_rules(protocol_id):
    stored = resources_from_transaction(applied(protocol_id, addresses=["Condition/pa"]))
    lookup = InMemoryLookup(stored + [{"resourceType": "Condition", "id": "pa", "subject": {"reference": "Patient/p1"},
                                       "code": {"coding": [{"system": "http://ipt-fhir.org/fhir/CodeSystem/ipt-problem-area",
                                                            "code": "grief"}]}}])
    for r in stored:
        assert [i for i in validate_resource(r) if i.is_error] == [], r["resourceType"]
        assert check(r, None, lookup) == [], r["resourceType"]


def test_weekly_sessions_fall_on_the_chosen_weekday():
    sessions = by_type(applied("ipt-standard-individual", session_count=12, weekday="thu"), "Encounter")
    days = [date.fromisoformat(s["period"]["start"][:10]) for s in sessions]
    assert days[0] == date(2025, 1, 9) and {d.weekday() for d in days} == {3}
    assert all((b - a).days == 7 for a, b in zip(days, days[1:]))


def test_brief_course_is_fortnightly_over_five_months():
    bundle = applied("ipt-brief")
    days = [date.fromisoformat(s["period"]["start"][:10]) for s in by_type(bundle, "Encounter")]
    assert len(days) == 10 and all((b - a).days == 14 for a, b in zip(days, days[1:]))
    assert by_type(bundle, "CarePlan")[0]["period"]["end"] == "2025-06-06"


def test_maintenance_is_monthly():
    days = [s["period"]["start"][:10] for s in by_type(applied("ipt-maintenance", session_count=3), "Encounter")]
    assert days == ["2025-01-06", "2025-02-06", "2025-03-06"]


def test_session_minutes_follow_the_protocol():
    group = by_type(applied("ipt-who-group"), "Encounter")[0]
    assert group["period"] == {"start": "2025-01-06T09:00:00Z", "end": "2025-01-06T10:30:00Z"}
    assert group["type"][0]["coding"][0]["code"] == "90853"


def test_session_count_above_the_protocol_maximum_is_refused():
    with pytest.raises(FHIRError) as caught:
        applied("ipt-standard-individual", session_count=21)
    assert caught.value.status == 422 and caught.value.issues[0].code == "business-rule"


@pytest.mark.parametrize("bad", ["someday", 9, 0.5])
def test_bad_weekday_is_a_400(bad):
    with pytest.raises(FHIRError) as caught:
        applied("ipt-standard-individual", weekday=bad)
    assert caught.value.status == 400


def test_unknown_protocol_is_refused():
    with pytest.raises(FHIRError):
        applied("ipt-nope")


def test_apply_uses_the_configured_canonical_base():
    bundle = applied("ipt-brief", canonical_base="https://fhir.clinic.example")
    plan = by_type(bundle, "CarePlan")[0]
    assert plan["meta"]["profile"] == ["https://fhir.clinic.example/StructureDefinition/ipt-careplan"]
    assert plan["instantiatesCanonical"] == ["https://fhir.clinic.example/PlanDefinition/ipt-brief"]


def test_apply_is_deterministic_with_an_id_factory():
    assert applied("ipt-brief") == applied("ipt-brief")


def test_build_plan_exposes_the_parts():
    plan = build_plan("ipt-who-group", "Patient/p1", None, START, new_id=counter_ids())
    assert plan.careplan[1]["resourceType"] == "CarePlan" and len(plan.sessions) == 8
    assert "participant" not in plan.sessions[0][1]


def test_apply_parameters_from_a_parameters_body_and_a_query():
    from ipt_fhir.domain.apply import parse_apply_parameters
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "subject", "valueReference": {"reference": "Patient/p1"}},
        {"name": "practitioner", "valueReference": {"reference": "Practitioner/t1"}},
        {"name": "start", "valueDate": "2025-01-06"}, {"name": "sessionCount", "valueInteger": 12},
        {"name": "weekday", "valueCode": "wed"}, {"name": "store", "valueBoolean": True}]}
    req = parse_apply_parameters(body)
    assert (req.subject, req.practitioner, req.start, req.session_count, req.weekday, req.store) == \
        ("Patient/p1", "Practitioner/t1", START, 12, 2, True)
    query = parse_apply_parameters([("subject", "Patient/p1"), ("start", "2025-01-06")])
    assert query.session_count is None and query.store is False
    bundle = apply_protocol("ipt-standard-individual", **query.kwargs(), new_id=counter_ids())
    assert len(by_type(bundle, "Encounter")) == 16


@pytest.mark.parametrize("pairs", [
    [("start", "2025-01-06")], [("subject", "Group/1"), ("start", "2025-01-06")],
    [("subject", "Patient/1"), ("start", "6 Jan")], [("subject", "Patient/1"), ("start", "2025-01-06"), ("sessionCount", "-3")],
    [("subject", "Patient/1"), ("start", "2025-01-06"), ("store", "maybe")],
])
def test_bad_apply_parameters_are_400(pairs):
    from ipt_fhir.domain.apply import parse_apply_parameters
    with pytest.raises(FHIRError) as caught:
        parse_apply_parameters(pairs)
    assert caught.value.status == 400
