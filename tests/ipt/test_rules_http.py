"""Each IPT rule with a failing and a passing case, through the HTTP API (create/update) and inside a
transaction. The world (tests/domain/world.py) is stored first: CarePlan/plan, ServiceRequest/course,
Encounter/s1..s12, Conditions dx and pa1, Goal/g1, all for Patient/p1."""
from __future__ import annotations

import copy
from datetime import date
from dataclasses import dataclass, field

import pytest

from ipt_fhir.domain.canonical import CS_ATTENDANCE, EXT_ATTENDANCE, EXT_PHASE, EXT_SESSION_NUMBER, canonical, is_ipt_url
from tests.domain.world import BASE, World, goal, phq9, problem_area

from .helpers import OUTCOME, errors, expressions, load_world, progress, put, transaction, warnings


@dataclass
class Case:
    bad: dict
    good: dict
    expression: str | None = None  # an expression of the error (resource-relative)
    diagnostics: str | None = None  # or a part of its text
    setup: list[dict] = field(default_factory=list)
    code: str = "business-rule"  # the issue type of its errors


def _set_ext(resource, ext_id, key, value):
    for ext in resource["extension"]:
        if is_ipt_url(ext["url"], "StructureDefinition", ext_id):
            ext[key] = value
    return resource


def _held(world: World, *numbers: int) -> list[dict]:
    out = []
    for n in numbers:
        s = world.session(n)
        s["status"] = "finished"
        world.put(s)
        out.append(s)
    return out


def _with(resource: dict, **changes) -> dict:
    out = copy.deepcopy(resource)
    out.update(changes)
    return out


OTHER = {"reference": "Patient/other"}


def case_session_subject(w):
    return Case(_with(w.session(2), subject=OTHER), _with(w.session(1), status="finished"), "Encounter.subject")


def case_course_subject(w):
    return Case(_with(w.course, subject=OTHER), _with(w.course, note=[{"text": "weekly"}]), "ServiceRequest.subject")


def case_plan_goal_of_another_patient(w):
    plan_bad, plan_good = w.plan, w.plan
    plan_bad["goal"].append({"reference": "Goal/g2"})
    plan_good["goal"].append({"reference": "Goal/g3"})
    setup = [problem_area("pa9", patient="Patient/other"), goal("g2", ["Condition/pa9"], patient="Patient/other"),
             goal("g3", ["Condition/pa1"])]
    return Case(plan_bad, plan_good, "CarePlan.goal[1]", setup=setup)


def case_score_subject(w):
    return Case(phq9("o2", 12, "2025-01-06T09:00:00Z", patient="Patient/other"),
                phq9("o1", 12, "2025-01-06T09:00:00Z"), "Observation.subject")


def case_score_range(w):
    return Case(phq9("o1", 28, "2025-01-06T09:00:00Z"), phq9("o1", 27, "2025-01-06T09:00:00Z"), "Observation.value")


def case_problem_area_subject(w):
    return Case(problem_area("pa1", patient="Patient/other"), problem_area("pa1", "grief"), "Condition.subject")


def case_duplicate_session_number(w):
    return Case(_set_ext(w.session(5), EXT_SESSION_NUMBER, "valuePositiveInt", 4), w.session(5),
                diagnostics="already used")


def case_session_outside_plan_period(w):
    bad = _with(w.session(12), period={"start": "2026-01-05T09:00:00Z", "end": "2026-01-05T09:50:00Z"})
    return Case(bad, w.session(12), "Encounter.period.start")


def case_course_beyond_protocol_maximum(w):
    bad, good = w.course, w.course
    bad["quantityQuantity"]["value"] = bad["occurrenceTiming"]["repeat"]["count"] = 24
    good["quantityQuantity"]["value"] = good["occurrenceTiming"]["repeat"]["count"] = 20
    return Case(bad, good, "ServiceRequest.quantity")


def case_course_without_its_careplan(w):
    bad = _with(w.course, id="course2", basedOn=[{"reference": "CarePlan/missing"}])
    good = _with(w.course, id="course2")
    good["quantityQuantity"]["value"] = good["occurrenceTiming"]["repeat"]["count"] = 4
    return Case(bad, good, "ServiceRequest.basedOn")


def case_session_without_its_course(w):
    return Case(_with(w.session(1), basedOn=[{"reference": "ServiceRequest/missing"}]), w.session(1),
                "Encounter.basedOn")


def case_phase_going_backwards(w):
    bad = w.session(2)
    for ext in bad["extension"]:
        if is_ipt_url(ext["url"], "StructureDefinition", EXT_PHASE):
            ext["valueCoding"]["code"] = "middle"
    return Case(bad, w.session(2), diagnostics="phase goes backwards")


def case_plan_status_back_to_draft(w):
    return Case(_with(w.plan, status="draft"), _with(w.plan, status="on-hold"), "CarePlan.status")


def case_plan_completed_without_termination_session(w):
    setup = _held(w, *range(1, 11))
    return Case(_with(w.plan, status="completed"), _with(w.plan, status="on-hold"), "CarePlan.status", setup=setup)


def case_finished_session_back_to_planned(w):
    setup = _held(w, 1)
    return Case(_with(w.session(1), status="planned"), w.session(1), "Encounter.status", setup=setup)


def case_goal_addressing_a_missing_condition(w):
    return Case(goal("g1", ["Condition/missing"]), goal("g1", ["Condition/pa1"]), "Goal.addresses[0]")


def case_goal_achievement_code_not_in_its_code_system(w):
    achieved = "http://terminology.hl7.org/CodeSystem/goal-achievement"
    bogus = {"coding": [{"system": achieved, "code": "bogus"}]}
    improving = {"coding": [{"system": achieved, "code": "improving"}, {"system": "urn:ehr", "code": "better"}]}
    return Case(_with(goal("g1", ["Condition/pa1"]), achievementStatus=bogus),
                _with(goal("g1", ["Condition/pa1"]), achievementStatus=improving),
                "Goal.achievementStatus.coding[0].code", code="code-invalid")


def case_plan_losing_its_problem_area_after_the_initial_phase(w):
    setup = _held(w, 1, 2, 3, 4)
    return Case(_with(w.plan, addresses=[{"reference": "Condition/dx"}]), w.plan, "CarePlan.addresses", setup=setup)


def case_middle_session_without_a_problem_area(w):
    plan = _with(w.plan, addresses=[{"reference": "Condition/dx"}])
    setup = [plan, *_held(w, 1, 2, 3)]
    return Case(_with(w.session(4), status="finished"), w.session(4), "Encounter.basedOn", setup=setup)


_ATTENDANCE_PATH = f"Encounter.extension.where(url='{canonical(BASE, 'StructureDefinition', EXT_ATTENDANCE)}').value"


def _attendance(session: dict, code: str) -> dict:
    ext = {"url": canonical(BASE, "StructureDefinition", EXT_ATTENDANCE),
           "valueCoding": {"system": canonical(BASE, "CodeSystem", CS_ATTENDANCE), "code": code}}
    return _with(session, extension=[*session.get("extension", []), ext])


def case_session_attended_but_cancelled(w):
    """$ipt-progress counts sessions by status: the attendance must agree with it."""
    return Case(_attendance(_with(w.session(2), status="cancelled"), "attended"),
                _attendance(_with(w.session(2), status="cancelled"), "no-show"),
                _ATTENDANCE_PATH, diagnostics="attendance 'attended' contradicts the session's status 'cancelled'")


def case_session_finished_but_a_no_show(w):
    return Case(_attendance(_with(w.session(1), status="finished"), "no-show"),
                _attendance(_with(w.session(1), status="finished"), "attended"),
                _ATTENDANCE_PATH, diagnostics="attendance 'no-show' contradicts the session's status 'finished'")


CASES = {name[5:]: fn for name, fn in globals().items() if name.startswith("case_")}


def _prepare(client, name):
    world = load_world(client)
    case = CASES[name](world)
    for resource in case.setup:
        r = put(client, resource)
        assert r.status_code in (200, 201), r.text
    return case


def _assert_refused(response, case: Case, prefix: str = ""):
    assert response.status_code == 422, response.text
    found = errors(response)
    assert all(i["code"] == case.code for i in found)
    if case.expression:
        rtype, _, rest = case.expression.partition(".")
        wanted = f"{prefix}.resource.{rest}" if prefix else case.expression
        assert wanted in expressions(found), expressions(found)
    if case.diagnostics:
        assert any(case.diagnostics in i["diagnostics"] for i in found)


@pytest.mark.parametrize("name", sorted(CASES))
def test_rule_through_the_rest_api(client, name):
    case = _prepare(client, name)
    _assert_refused(put(client, case.bad), case)
    r = put(client, case.good, **OUTCOME)
    assert r.status_code in (200, 201), r.text
    assert not errors(r)


@pytest.mark.parametrize("name", sorted(CASES))
def test_rule_inside_a_transaction(client, name):
    case = _prepare(client, name)
    patient = {"resourceType": "Patient", "id": "p2"}
    r = client.post("/fhir", json=transaction([patient, case.bad]))
    _assert_refused(r, case, prefix="Bundle.entry[1]")
    assert client.get("/fhir/Patient/p2").status_code == 404  # the whole transaction rolled back
    r = client.post("/fhir", json=transaction([patient, case.good]))
    assert r.status_code == 200, r.text


def test_rules_apply_to_patch(client):
    load_world(client)
    r = client.patch("/fhir/CarePlan/plan", json=[{"op": "replace", "path": "/status", "value": "draft"}],
                     headers={"Content-Type": "application/json-patch+json"})
    _assert_refused(r, Case({}, {}, "CarePlan.status"))
    r = client.patch("/fhir/CarePlan/plan", json=[{"op": "replace", "path": "/status", "value": "on-hold"}],
                     headers={"Content-Type": "application/json-patch+json"})
    assert r.status_code == 200


def test_rules_apply_to_create(client):
    load_world(client)
    bad = phq9("x", 30, "2025-01-06T09:00:00Z")
    bad.pop("id")
    _assert_refused(client.post("/fhir/Observation", json=bad), Case({}, {}, "Observation.value"))
    bad["valueQuantity"]["value"] = 9
    assert client.post("/fhir/Observation", json=bad).status_code == 201


def test_warnings_come_back_with_the_success(client):
    world = load_world(client, World(sessions=12))
    extra = world.session(12)
    extra["id"] = "s13"
    _set_ext(extra, EXT_SESSION_NUMBER, "valuePositiveInt", 13)
    extra["period"] = {"start": "2025-03-31T09:00:00Z", "end": "2025-03-31T09:50:00Z"}
    r = put(client, extra, **OUTCOME)
    assert r.status_code == 201
    assert any("more sessions than the 12 planned" in i["diagnostics"] for i in warnings(r))


def test_a_session_typed_as_an_office_visit_is_stored_with_a_warning(client):
    world = load_world(client, World(sessions=12))
    session = world.session(1)
    assert not [i for i in warnings(put(client, session, **OUTCOME)) if "session type" in i["diagnostics"]]
    session["type"] = [{"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "99213"}]}]
    r = put(client, session, **OUTCOME)
    assert r.status_code == 200, r.text
    found = [i for i in warnings(r) if "not an IPT session type" in i["diagnostics"]]
    assert expressions(found) == ["Encounter.type[0]"]


def test_resources_without_an_ipt_profile_are_not_checked(client):
    """Unless $ipt-progress reads them as an IPT plan's sessions or scores (the two tests above)."""
    load_world(client)
    obs = phq9("plain", 99, "2025-01-06T09:00:00Z", plan=None, patient="Patient/other")
    obs.pop("meta")
    assert put(client, obs).status_code == 201


def _declined(oid: str, when: str) -> dict:
    """A PHQ-9 the patient declined to fill in: no value, the reason instead."""
    obs = phq9(oid, 0, when)
    del obs["valueQuantity"]
    obs["dataAbsentReason"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                                           "code": "asked-declined"}]}
    return obs


def test_a_phq9_total_is_a_whole_number(client):
    load_world(client)
    r = put(client, phq9("o1", 12.5, "2025-01-06T09:00:00Z"))
    assert r.status_code == 422, r.text
    assert expressions(errors(r)) == ["Observation.valueQuantity.value"]
    assert "whole number" in errors(r)[0]["diagnostics"]
    assert client.get("/fhir/Observation/o1").status_code == 404
    assert put(client, phq9("o1", 12.0, "2025-01-06T09:00:00Z")).status_code == 201


def test_a_phq9_quantity_without_its_value_is_refused(client):
    """value[x] is present, so obs-6 holds, but a score without its number says nothing."""
    load_world(client)
    obs = phq9("o1", 12, "2025-01-06T09:00:00Z")
    del obs["valueQuantity"]["value"]
    r = put(client, obs)
    assert r.status_code == 422, r.text
    assert expressions(errors(r)) == ["Observation.valueQuantity.value"]
    assert client.get("/fhir/Observation/o1").status_code == 404


def test_a_declined_phq9_is_recorded_and_progress_ignores_it(client):
    load_world(client)
    assert put(client, phq9("o1", 18, "2025-01-06T09:00:00Z")).status_code == 201
    r = put(client, _declined("o2", "2025-01-13T09:00:00Z"))
    assert r.status_code == 201, r.text
    figures = progress(client, "plan")
    assert figures["phq9Baseline"]["value"] == figures["phq9Latest"]["value"] == 18
    assert "phq9Change" not in figures  # one score taken: no change to report


def test_a_phq9_needs_a_value_or_the_reason_it_has_none(client):
    load_world(client)
    neither = _declined("o1", "2025-01-06T09:00:00Z")
    del neither["dataAbsentReason"]
    r = put(client, neither)
    assert r.status_code == 422, r.text
    assert any("ipt-score-1" in i["diagnostics"] for i in errors(r))
    assert expressions(errors(r)) == ["Observation"]


def test_a_score_dated_in_the_future_is_refused(client):
    """It would be the plan's latest score, and $ipt-progress would report its value as the outcome."""
    load_world(client)
    r = put(client, phq9("future", 3, "2099-01-01T10:00:00Z"))
    assert r.status_code == 422, r.text
    assert [i["expression"] for i in errors(r)] == [["Observation.effective"]]
    assert "in the future" in errors(r)[0]["diagnostics"]
    assert put(client, phq9("today", 3, date.today().isoformat())).status_code == 201
    for partial in ("2099", "2099-05"):  # a date of any precision that starts in the future
        assert put(client, phq9(f"partial-{partial}", 3, partial)).status_code == 422, partial
    retracted = phq9("future", 3, "2099-01-01T10:00:00Z", status="entered-in-error")
    assert put(client, retracted).status_code == 201  # a retraction may always be stored


def test_a_score_at_a_session_not_held_or_far_from_its_date_is_stored_with_a_warning(client):
    world = load_world(client, World(sessions=12))
    session = world.session(1)
    start = session["period"]["start"]
    planned = put(client, phq9("at-planned", 12, start, encounter="Encounter/s1"), **OUTCOME)
    assert planned.status_code == 201
    assert [(i["expression"], "planned, not held" in i["diagnostics"]) for i in warnings(planned)] == \
        [(["Observation.encounter"], True)]
    session["status"] = "finished"
    assert put(client, session).status_code == 200
    same_day = put(client, phq9("same-day", 12, start, encounter="Encounter/s1"), **OUTCOME)
    assert same_day.status_code == 201 and not warnings(same_day)
    far = put(client, phq9("far", 12, "2025-06-30", encounter="Encounter/s1"), **OUTCOME)
    assert far.status_code == 201
    assert expressions(warnings(far)) == ["Observation.effective"]


def test_an_encounter_based_on_an_ipt_course_is_held_to_the_session_rules_without_claiming_the_profile(client):
    """$ipt-progress counts every Encounter based on the plan's course as a session, profile or not; such
    Encounters used to skip the rules, so plain ones past the protocol's maximum (8 for WHO group IPT)
    made sessionsAttended 11 of 8."""
    world = load_world(client, World(protocol="ipt-who-group", sessions=8))
    for n in range(1, 9):
        assert put(client, {**world.session(n), "status": "finished"}).status_code == 200
    plain = {"resourceType": "Encounter", "id": "plain-9", "status": "finished",
             "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
             "subject": {"reference": "Patient/p1"}, "basedOn": [{"reference": "ServiceRequest/course"}],
             "period": {"start": "2025-03-03T09:00:00Z", "end": "2025-03-03T09:50:00Z"}}
    r = put(client, plain)
    assert r.status_code == 422, r.text
    assert any("allows at most 8" in e["diagnostics"] for e in errors(r)), errors(r)
    assert progress(client, "plan")["sessionsAttended"] == 8
    # another patient's plain session of the course is refused as a profiled one is
    r = put(client, {**plain, "id": "plain-other", "subject": {"reference": "Patient/other"}, "status": "planned"})
    assert r.status_code == 422 and "Encounter.subject" in expressions(errors(r))
    # an Encounter based on a ServiceRequest of no IPT plan is no session: no rule
    assert put(client, {"resourceType": "ServiceRequest", "id": "referral", "status": "active", "intent": "order",
                        "subject": {"reference": "Patient/p1"}}).status_code == 201
    r = put(client, {**plain, "id": "plain-referral", "basedOn": [{"reference": "ServiceRequest/referral"}]})
    assert r.status_code == 201, r.text


def test_a_phq9_of_an_ipt_plan_is_held_to_the_score_rules_without_claiming_the_profile(client):
    """$ipt-progress reads every PHQ-9 of the plan (or of one of its sessions) as a score, profile or not: a
    future-dated one became the course's outcome while the same score claiming the profile was refused."""
    load_world(client, World(sessions=4))
    plain = phq9("plain", 12, "2025-01-06T09:00:00Z")
    plain.pop("meta")
    future = {**plain, "id": "future", "effectiveDateTime": "2999-01-01T09:00:00Z"}
    r = put(client, future)
    assert r.status_code == 422 and "Observation.effective" in expressions(errors(r))
    r = put(client, {**plain, "id": "too-high", "valueQuantity": {**plain["valueQuantity"], "value": 31}})
    assert r.status_code == 422 and "Observation.value" in expressions(errors(r))
    through_session = {**plain, "id": "via-session", "encounter": {"reference": "Encounter/s1"}}
    through_session.pop("basedOn")
    r = put(client, {**through_session, "subject": {"reference": "Patient/other"}})
    assert r.status_code == 422 and "Observation.encounter" in expressions(errors(r))
    r = put(client, plain)
    assert r.status_code == 201, r.text
    assert progress(client, "plan")["phq9Latest"]["value"] == 12
    # a PHQ-9 of no IPT plan is no IPT score: no rule
    unrelated = {**plain, "id": "unrelated", "valueQuantity": {**plain["valueQuantity"], "value": 31}}
    unrelated.pop("basedOn")
    assert put(client, unrelated).status_code == 201


def test_a_revoked_course_counts_only_its_sessions_held_against_the_protocol_maximum(client):
    """A course revoked after 4 of 16 sessions plans those 4 ($ipt-progress sessionsPlanned): a new course
    of 16 makes 20, the standard protocol's maximum, where counting the revoked order made it 32."""
    world = load_world(client, World(sessions=16))
    for n in range(1, 5):
        assert put(client, {**world.session(n), "status": "finished"}).status_code == 200
    assert put(client, {**world.course, "status": "revoked"}).status_code == 200
    assert progress(client, "plan")["sessionsPlanned"] == 4

    def extension(sessions: int) -> dict:
        course = {**world.course, "id": "course-2", "status": "active", "identifier": []}
        course.pop("identifier")
        course["quantityQuantity"] = {**course["quantityQuantity"], "value": sessions}
        course["occurrenceTiming"] = copy.deepcopy(course["occurrenceTiming"])
        course["occurrenceTiming"]["repeat"]["count"] = sessions
        return course

    too_many = put(client, extension(17))
    assert too_many.status_code == 422
    assert any("21 sessions ordered" in e["diagnostics"] for e in errors(too_many)), errors(too_many)
    assert put(client, extension(16)).status_code == 201
    assert progress(client, "plan")["sessionsPlanned"] == 20
