"""Each IPT rule with a passing and a failing case, on an in-memory world (no database, no HTTP)."""
from __future__ import annotations

import pytest

from ipt_fhir.domain.canonical import EXT_PHASE, EXT_SESSION_NUMBER, is_ipt_url
from ipt_fhir.domain.rules import check

from .world import World, goal, phq9, problem_area


def errors(issues):
    return [i for i in issues if i.severity == "error"]


def warnings(issues):
    return [i for i in issues if i.severity == "warning"]


def paths(issues):
    return [e for i in issues for e in i.expression]


def set_ext(resource, ext_id, key, value):
    for ext in resource["extension"]:
        if is_ipt_url(ext["url"], "StructureDefinition", ext_id):
            ext[key] = value
            return resource
    raise AssertionError(ext_id)


def phase_of(resource, code):
    for ext in resource["extension"]:
        if is_ipt_url(ext["url"], "StructureDefinition", EXT_PHASE):
            ext["valueCoding"]["code"] = code
    return resource


@pytest.fixture
def world():
    return World()


def test_resources_without_an_ipt_profile_are_not_checked(world):
    goal = world.get("Goal", "g1")
    goal["meta"]["profile"] = ["http://example.org/other"]
    goal["subject"] = {"reference": "Patient/other"}
    assert check(goal, None, world.lookup) == []
    course = world.course
    course["meta"]["profile"] = ["http://example.org/other"]
    course["subject"] = {"reference": "Patient/other"}
    course["basedOn"] = [{"reference": "CarePlan/not-stored"}]  # no IPT plan: no course
    assert check(course, None, world.lookup) == []
    session = world.session(1)
    session["meta"]["profile"] = ["http://example.org/other"]
    session["subject"] = {"reference": "Patient/other"}
    session["basedOn"] = [{"reference": "ServiceRequest/not-stored"}]  # no IPT course: no session
    assert check(session, None, world.lookup) == []


def test_an_encounter_based_on_an_ipt_course_is_checked_as_a_session_whatever_it_claims(world):
    """$ipt-progress counts it as a session, so the session rules hold for it too."""
    session = world.session(1)
    session["meta"]["profile"] = ["http://example.org/other"]
    session["subject"] = {"reference": "Patient/other"}
    assert "Encounter.subject" in [e for i in check(session, None, world.lookup) if i.is_error for e in i.expression]


def test_applied_world_passes_every_rule(world):
    for r in world.resources:
        assert check(r, None, world.lookup) == [], r["resourceType"]


# ---- one subject -------------------------------------------------------------------------------
def test_session_with_another_subject_is_an_error(world):
    session = world.session(2)
    session["subject"] = {"reference": "Patient/other"}
    issues = check(session, world.session(2), world.lookup)
    assert "Encounter.subject" in paths(errors(issues))


def test_course_with_another_subject_is_an_error(world):
    course = world.course
    course["subject"] = {"reference": "Patient/other"}
    assert "ServiceRequest.subject" in paths(errors(check(course, world.course, world.lookup)))


def test_careplan_goal_of_another_patient_is_an_error(world):
    world.put(goal("g2", ["Condition/dx"], patient="Patient/other"))
    plan = world.plan
    plan["goal"].append({"reference": "Goal/g2"})
    assert "CarePlan.goal[1]" in paths(errors(check(plan, world.plan, world.lookup)))


def test_careplan_subject_change_with_sessions_of_the_old_subject_is_an_error(world):
    plan = world.plan
    plan["subject"] = {"reference": "Patient/other"}
    assert "CarePlan.subject" in paths(errors(check(plan, world.plan, world.lookup)))


def test_score_of_another_patient_than_its_plan_is_an_error(world):
    assert check(phq9("o1", 12, "2025-01-06T09:00:00Z"), None, world.lookup) == []
    other = phq9("o2", 12, "2025-01-06T09:00:00Z", patient="Patient/other")
    assert "Observation.subject" in paths(errors(check(other, None, world.lookup)))


def test_score_of_another_patient_than_its_session_is_an_error(world):
    other = phq9("o2", 12, "2025-01-06T09:00:00Z", plan=None, encounter="Encounter/s1", patient="Patient/other")
    assert "Observation.encounter" in paths(errors(check(other, None, world.lookup)))


def test_problem_area_of_another_patient_than_its_plan_is_an_error(world):
    assert check(problem_area("pa1"), None, world.lookup) == []
    moved = problem_area("pa1", patient="Patient/other")
    assert "Condition.subject" in paths(errors(check(moved, None, world.lookup)))


# ---- session numbers, dates, counts --------------------------------------------------------------
def test_duplicate_session_number_is_an_error(world):
    session = set_ext(world.session(5), EXT_SESSION_NUMBER, "valuePositiveInt", 4)
    issues = errors(check(session, world.session(5), world.lookup))
    assert any("already used" in i.diagnostics for i in issues)
    assert all("ipt-session-number" in p for p in paths(issues) if "extension" in p)


def test_cancelled_session_number_may_be_reused():
    world = World()
    world.hold(4, status="cancelled")
    session = set_ext(world.session(5), EXT_SESSION_NUMBER, "valuePositiveInt", 4)
    session["period"] = {"start": "2025-01-29T09:00:00Z", "end": "2025-01-29T09:50:00Z"}
    assert not any("already used" in i.diagnostics for i in check(session, world.session(5), world.lookup))


def test_session_numbers_must_increase_with_date(world):
    session = world.session(3)
    session["period"] = {"start": "2025-02-20T09:00:00Z", "end": "2025-02-20T09:50:00Z"}  # after session 4..7
    issues = errors(check(session, world.session(3), world.lookup))
    assert any("increase with the session date" in i.diagnostics for i in issues)


def test_session_outside_the_plan_period_is_an_error(world):
    session = world.session(12)
    session["period"] = {"start": "2026-01-05T09:00:00Z", "end": "2026-01-05T09:50:00Z"}
    assert "Encounter.period.start" in paths(errors(check(session, world.session(12), world.lookup)))


def test_more_sessions_than_planned_is_a_warning():
    world = World(sessions=12)
    extra = world.session(12)
    extra["id"] = "s13"
    set_ext(extra, EXT_SESSION_NUMBER, "valuePositiveInt", 13)
    extra["period"] = {"start": "2025-03-31T09:00:00Z", "end": "2025-03-31T09:50:00Z"}
    issues = check(extra, None, world.lookup)
    assert not errors(issues)
    assert any("more sessions than the 12 planned" in i.diagnostics for i in warnings(issues))


def test_more_sessions_than_the_protocol_maximum_is_an_error():
    world = World("ipt-who-group", sessions=8)
    extra = world.session(8)
    extra["id"] = "s9"
    set_ext(extra, EXT_SESSION_NUMBER, "valuePositiveInt", 9)
    extra["period"] = {"start": "2025-03-03T09:00:00Z", "end": "2025-03-03T10:30:00Z"}
    issues = errors(check(extra, None, world.lookup))
    assert any("maximum of 8" in i.diagnostics for i in issues)


def test_course_ordering_more_than_the_protocol_maximum_is_an_error(world):
    course = world.course
    course["quantityQuantity"]["value"] = 24
    course["occurrenceTiming"]["repeat"]["count"] = 24
    assert "ServiceRequest.quantity" in paths(errors(check(course, world.course, world.lookup)))
    ok = world.course
    ok["quantityQuantity"]["value"] = 20
    ok["occurrenceTiming"]["repeat"]["count"] = 20
    assert not errors(check(ok, world.course, world.lookup))


def test_course_must_be_based_on_an_existing_careplan(world):
    course = world.course
    course["basedOn"] = [{"reference": "CarePlan/missing"}]
    assert "ServiceRequest.basedOn" in paths(errors(check(course, None, world.lookup)))


def test_session_must_be_based_on_an_existing_course(world):
    session = world.session(1)
    session["basedOn"] = [{"reference": "ServiceRequest/missing"}]
    assert "Encounter.basedOn" in paths(errors(check(session, None, world.lookup)))


# ---- phases and problem areas --------------------------------------------------------------------
def test_phase_the_protocol_does_not_have_is_an_error(world):
    session = phase_of(world.session(6), "maintenance")
    issues = errors(check(session, world.session(6), world.lookup))
    assert any("has no maintenance phase" in i.diagnostics for i in issues)


def test_phase_going_backwards_is_an_error(world):
    session = phase_of(world.session(2), "middle")   # session 3 is initial
    issues = check(session, world.session(2), world.lookup)
    assert any("phase goes backwards" in i.diagnostics for i in errors(issues))


def test_phase_other_than_expected_is_a_warning(world):
    world.put(phase_of(world.session(4), "initial"))   # stretch the initial phase by one session
    session = phase_of(world.session(4), "initial")
    issues = check(session, world.session(4), world.lookup)
    assert not errors(issues)
    assert any("expected in the middle phase" in i.diagnostics for i in warnings(issues))


def test_middle_phase_session_without_a_problem_area_is_an_error():
    world = World(with_problem_area=False)
    world.hold(1, 2, 3)
    held = world.session(4)
    held["status"] = "finished"
    assert "Encounter.basedOn" in paths(errors(check(held, world.session(4), world.lookup)))
    early = world.session(3)
    assert not errors(check(early, world.session(3), world.lookup))


def test_more_than_two_problem_areas_is_a_warning(world):
    for pid, code in (("pa2", "grief"), ("pa3", "role-transition")):
        world.put(problem_area(pid, code))
    plan = world.plan
    plan["addresses"] += [{"reference": "Condition/pa2"}, {"reference": "Condition/pa3"}]
    issues = check(plan, world.plan, world.lookup)
    assert not errors(issues)
    assert "CarePlan.addresses" in paths(warnings(issues))


def test_careplan_losing_its_problem_area_after_the_initial_phase_is_an_error(world):
    world.hold(1, 2, 3, 4)
    plan = world.plan
    plan["addresses"] = [{"reference": "Condition/dx"}]
    assert "CarePlan.addresses" in paths(errors(check(plan, world.plan, world.lookup)))


def test_goal_must_address_a_problem_area_or_the_diagnosis(world):
    assert check(goal("g1", ["Condition/pa1"]), None, world.lookup) == []
    assert check(goal("g1", ["Condition/dx"]), None, world.lookup) == []
    assert "Goal.addresses" in paths(errors(check(goal("g1", []), None, world.lookup)))
    world.put({"resourceType": "Condition", "id": "other", "subject": {"reference": "Patient/p1"},
               "category": [{"coding": [{"code": "something-else"}]}]})
    assert "Goal.addresses" in paths(errors(check(goal("g1", ["Condition/other"]), None, world.lookup)))


def test_goal_addressing_another_patients_condition_is_an_error(world):
    world.put(problem_area("pa9", patient="Patient/other"))
    assert "Goal.addresses[0]" in paths(errors(check(goal("g1", ["Condition/pa9"]), None, world.lookup)))


def test_goal_of_another_patient_than_its_plan_is_an_error(world):
    world.put(problem_area("pa9", patient="Patient/other"))
    moved = goal("g1", ["Condition/pa9"], patient="Patient/other")
    assert "Goal.subject" in paths(errors(check(moved, None, world.lookup)))


# ---- completion and status transitions -----------------------------------------------------------
def test_completed_plan_needs_a_held_termination_session(world):
    world.hold(*range(1, 11))
    plan = world.plan
    plan["status"] = "completed"
    assert "CarePlan.status" in paths(errors(check(plan, world.plan, world.lookup)))
    world.hold(11, 12)
    assert not errors(check(plan, world.plan, world.lookup))


def test_maintenance_plan_completes_without_a_termination_phase():
    world = World("ipt-maintenance", sessions=6)
    world.hold(*range(1, 7))
    plan = world.plan
    plan["status"] = "completed"
    assert not errors(check(plan, world.plan, world.lookup))


@pytest.mark.parametrize("closed", ["completed", "revoked"])
def test_no_new_session_on_a_closed_plan(closed):
    world = World()
    world.hold(*range(1, 13))
    plan = world.plan
    plan["status"] = closed
    world.put(plan)
    extra = world.session(12)
    extra["id"], extra["status"] = "s13", "planned"
    set_ext(extra, EXT_SESSION_NUMBER, "valuePositiveInt", 13)
    extra["period"] = {"start": "2025-03-31T09:00:00Z", "end": "2025-03-31T09:50:00Z"}
    issues = errors(check(extra, None, world.lookup))
    assert any(f"no new session on a {closed} plan" in i.diagnostics for i in issues)


def test_no_new_active_course_on_a_closed_plan(world):
    plan = world.plan
    plan["status"] = "revoked"
    world.put(plan)
    course = world.course
    course["id"] = "course2"
    assert "ServiceRequest.basedOn[0]" in paths(errors(check(course, None, world.lookup)))


@pytest.mark.parametrize("old,new,severity", [
    ("active", "completed", None), ("active", "on-hold", None), ("active", "draft", "error"),
    ("revoked", "active", "error"), ("entered-in-error", "active", "error"), ("completed", "active", "warning"),
])
def test_careplan_status_transitions(old, new, severity):
    world = World()
    world.hold(*range(1, 13))
    previous = world.plan
    previous["status"] = old
    plan = world.plan
    plan["status"] = new
    found = [i.severity for i in check(plan, previous, world.lookup) if "CarePlan status" in i.diagnostics]
    assert found == ([severity] if severity else [])


def test_finished_session_cannot_go_back_to_planned(world):
    world.hold(1)
    session = world.session(1)
    session["status"] = "planned"
    assert "Encounter.status" in paths(errors(check(session, world.session(1), world.lookup)))


def test_entered_in_error_session_is_final(world):
    world.hold(1, status="entered-in-error")
    session = world.session(1)
    session["status"] = "finished"
    assert "Encounter.status" in paths(errors(check(session, world.session(1), world.lookup)))


def test_entered_in_error_session_is_not_otherwise_checked(world):
    session = world.session(1)
    session["status"] = "entered-in-error"
    session["period"] = {"start": "2030-01-01T09:00:00Z"}
    assert check(session, world.session(1), world.lookup) == []


def test_plan_entered_in_error_with_live_sessions_warns(world):
    plan = world.plan
    plan["status"] = "entered-in-error"
    issues = check(plan, world.plan, world.lookup)
    assert not errors(issues) and "CarePlan.status" in paths(warnings(issues))


def test_score_out_of_range_is_an_error(world):
    assert "Observation.value" in paths(errors(check(phq9("o1", 28, "2025-01-06"), None, world.lookup)))
    assert not errors(check(phq9("o1", 27, "2025-01-06"), None, world.lookup))


@pytest.mark.parametrize("unit,refused", [("{score}", False), ("1", False), ("{total score}", False),
                                          ("kg", True), ("%", True), ("mm[Hg]", True)])
def test_a_score_total_with_a_unit_of_measure_is_an_error(world, unit, refused):
    """A PHQ-9 total is a number of points: UCUM '1' or an annotation; 12 kg used to count as 12 points."""
    score = phq9("o1", 12, "2025-01-06")
    score["valueQuantity"] = {"value": 12, "system": "http://unitsofmeasure.org", "code": unit}
    found = paths(errors(check(score, None, world.lookup)))
    assert ("Observation.valueQuantity.code" in found) is refused


# A plan-wide rule the write itself did not break is a warning: the plan's own edits go on.
def test_a_goal_deleted_since_the_plan_listed_it_is_a_warning_on_plan_edits(world):
    world.lookup.delete("Goal", "g1")
    plan = world.plan
    plan["description"] = "edited after the goal was deleted"
    issues = check(plan, world.plan, world.lookup)
    assert not errors(issues) and "CarePlan.goal[0]" in paths(warnings(issues))
    plan["goal"].append({"reference": "Goal/never"})  # a goal added now must exist
    assert "CarePlan.goal[1]" in paths(errors(check(plan, world.plan, world.lookup)))


def test_a_problem_area_entered_in_error_later_does_not_block_edits_of_the_plan_or_held_sessions(world):
    world.hold(1, 2, 3, 4, 5)
    area = world.get("Condition", "pa1")
    area["verificationStatus"] = {"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "entered-in-error"}]}
    world.put(area)
    plan = world.plan
    plan["description"] = "edited"
    issues = check(plan, world.plan, world.lookup)
    assert not errors(issues) and "CarePlan.addresses" in paths(warnings(issues))
    session = world.session(5)
    session["participant"] = session.get("participant", []) + [{"individual": {"reference": "Practitioner/t2"}}]
    issues = check(session, world.session(5), world.lookup)
    assert not errors(issues) and "Encounter.basedOn" in paths(warnings(issues))
    newly_held = world.session(6)
    newly_held["status"] = "finished"
    assert "Encounter.basedOn" in paths(errors(check(newly_held, world.session(6), world.lookup)))


def _switched_to_who_group(held: int) -> tuple[World, dict]:
    """A standard plan with `held` sessions held, and its new version naming WHO group IPT (at most 8)."""
    world = World(sessions=held)
    world.hold(*range(1, held + 1))
    plan = world.plan
    plan["instantiatesCanonical"] = [plan["instantiatesCanonical"][0].replace("ipt-standard-individual",
                                                                              "ipt-who-group")]
    return world, plan


@pytest.mark.parametrize("held", [9, 12])  # one past the maximum, and more
def test_switching_to_a_protocol_the_recorded_sessions_exceed_is_an_error(held):
    world, plan = _switched_to_who_group(held)
    assert "CarePlan.instantiatesCanonical" in paths(errors(check(plan, world.plan, world.lookup)))


def test_once_a_switch_is_stored_edits_of_old_sessions_and_the_plan_are_told_not_refused():
    world, plan = _switched_to_who_group(12)
    world.put(plan)  # stored anyway (say before this rule)
    session = world.session(3)
    session["participant"] = session.get("participant", []) + [{"individual": {"reference": "Practitioner/t2"}}]
    issues = check(session, world.session(3), world.lookup)
    assert not errors(issues) and any("12 sessions" in i.diagnostics for i in warnings(issues))
    edited = world.plan  # nor is an edit of the plan that keeps its protocol
    edited["description"] = "edited"
    assert not errors(check(edited, world.plan, world.lookup))


def test_an_edit_that_adds_a_session_past_the_maximum_is_still_an_error():
    """Renumbering a counted session, or reinstating a cancelled one, is a session the edit adds."""
    world = World(sessions=12)
    renumbered = world.session(3)
    set_ext(renumbered, EXT_SESSION_NUMBER, "valuePositiveInt", 25)
    assert any("maximum of 20" in i.diagnostics for i in errors(check(renumbered, world.session(3), world.lookup)))
    group = World("ipt-who-group", sessions=8)
    group.hold(8, status="cancelled")
    replacement = dict(group.session(8), id="s8b", status="planned")
    group.put(replacement)
    reinstated = group.session(8)
    reinstated["status"] = "planned"
    assert "Encounter.basedOn" in paths(errors(check(reinstated, group.session(8), group.lookup)))


def test_a_protocol_the_server_does_not_know_is_named_in_a_warning(world):
    plan = world.plan
    plan["instantiatesCanonical"] = ["http://example.org/fhir/PlanDefinition/ipt-adolescent-v2"]
    issues = check(plan, world.plan, world.lookup)
    assert not errors(issues)
    assert "CarePlan.instantiatesCanonical" in paths(warnings(issues))
    assert "ipt-adolescent-v2" in warnings(issues)[0].diagnostics
    assert "CarePlan.instantiatesCanonical" not in paths(check(world.plan, world.plan, world.lookup))


def test_a_record_held_to_the_rules_by_its_links_only_may_always_be_withdrawn(world):
    """Plain scores and sessions linked to a plan were not checked before they were held to its rules:
    one stored then out of range, or about another patient, must still be retractable."""
    score = phq9("legacy", 40, "2025-01-06")
    score.pop("meta")
    assert paths(errors(check(score, None, world.lookup)))  # refused if written now
    retracted = {**score, "status": "entered-in-error"}
    assert check(retracted, score, world.lookup) == []
    session = world.session(1)
    session.pop("meta")
    session["subject"] = {"reference": "Patient/other"}
    assert check({**session, "status": "entered-in-error"}, session, world.lookup) == []


def test_a_service_request_based_on_an_ipt_plan_is_checked_as_a_course_whatever_it_claims(world):
    """$ipt-progress counts it as a course (sessionsPlanned): 30 sessions of a standard course is over the
    protocol's maximum of 20 whether or not the ServiceRequest claims the course profile."""
    course = world.course
    course.pop("meta")
    course["id"] = "plain-course"
    course["quantityQuantity"] = {**course["quantityQuantity"], "value": 30}
    assert errors(check(course, None, world.lookup))
