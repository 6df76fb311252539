from __future__ import annotations

import json

from ipt_fhir.domain.progress import PlanProgress, apply_change, compute_progress, new_progress, plans_affected

from .world import World, goal, phq9


def params(p: PlanProgress) -> dict:
    out = {}
    for item in p.to_parameters()["parameter"]:
        value = next((v for k, v in item.items() if k.startswith("value")), None)
        if "part" in item:
            value = {part["name"]: next(v for k, v in part.items() if k.startswith("value")) for part in item["part"]}
        out.setdefault(item["name"], []).append(value)
    return {k: v[0] if len(v) == 1 else v for k, v in out.items()}


def course_world():
    """12 planned sessions: 1-5 held, 6 a no-show, 7 held; PHQ-9 20 -> 14 -> 9."""
    world = World(sessions=12)
    world.hold(1, 2, 3, 4, 5, 7)
    world.hold(6, status="cancelled")
    scores = [phq9("o1", 20, "2025-01-06T09:00:00Z", encounter="Encounter/s1"),
              phq9("o2", 14, "2025-02-03T09:00:00Z", encounter="Encounter/s5"),
              phq9("o3", 9, "2025-02-17T09:00:00Z", encounter="Encounter/s7")]
    for s in scores:
        world.put(s)
    return world, scores


def full(world, scores):
    lk = world.lookup
    return compute_progress(
        world.plan, course_requests=[world.course], sessions=[world.session(n) for n in range(1, 13)],
        scores=scores, goals=[lk.read("Goal", "g1")],
        conditions=[lk.read("Condition", "pa1"), lk.read("Condition", "dx")])


def test_progress_figures_for_a_hand_computed_course():
    world, scores = course_world()
    p = params(full(world, scores))
    assert p["sessionsPlanned"] == 12
    assert p["sessionsAttended"] == 6
    assert p["sessionsMissed"] == 1
    assert p["sessionsRemaining"] == 5
    assert p["currentPhase"]["code"] == "middle"          # session 7 of 12
    assert p["problemArea"]["code"]["code"] == "role-dispute"
    assert p["phq9Baseline"] == {"value": 20, "date": "2025-01-06T09:00:00Z"}
    assert p["phq9Latest"] == {"value": 9, "date": "2025-02-17T09:00:00Z"}
    assert p["phq9Change"] == -11
    assert p["phq9Response"] is True                      # 55 % drop
    assert p["phq9Remission"] is False                    # 9 is not below 5
    assert p["goal"]["lifecycleStatus"] == "active"
    assert p["nextSession"]["start"] == "2025-02-24T09:00:00Z" and p["nextSession"]["sessionNumber"] == 8


def test_response_needs_half_the_baseline_and_remission_below_five():
    world, scores = course_world()
    scores[-1]["valueQuantity"]["value"] = 11          # 45 % drop
    p = full(world, scores)
    assert (p.phq9_response, p.phq9_remission) == (False, False)
    scores[-1]["valueQuantity"]["value"] = 4
    p = full(world, scores)
    assert (p.phq9_response, p.phq9_remission) == (True, True)


def test_a_single_score_is_a_baseline_without_response():
    world, scores = course_world()
    p = full(world, scores[:1])
    assert p.phq9_baseline.value == 20 and p.phq9_response is None
    assert "phq9Response" not in params(p)


def test_incremental_updates_equal_the_full_computation():
    world, scores = course_world()
    lk = world.lookup
    row = new_progress(world.plan)
    apply_change(row, world.plan, lookup=lk)            # reads problem areas and goals once
    apply_change(row, world.course)
    for n in range(1, 13):
        apply_change(row, world.session(n))
    for s in scores:
        apply_change(row, s)
    assert row.to_row() == full(world, scores).to_row()


def test_changes_and_deletions_move_the_figures():
    world, scores = course_world()
    row = full(world, scores)
    s8 = world.session(8)
    s8["status"] = "finished"
    apply_change(row, s8)
    assert (row.sessions_attended, row.sessions_remaining) == (7, 4)
    apply_change(row, scores[2], deleted=True)
    assert row.phq9_latest.value == 14
    wrong = dict(scores[1], status="entered-in-error")
    apply_change(row, wrong)
    assert row.phq9_latest.value == 20 and row.phq9_response is None
    s8["status"] = "entered-in-error"
    apply_change(row, s8)
    assert row.sessions_attended == 6


def test_goal_updates_only_count_goals_of_the_plan():
    world, scores = course_world()
    row = full(world, scores)
    apply_change(row, goal("elsewhere", ["Condition/dx"]))
    assert list(row.goals) == ["Goal/g1"]
    done = goal("g1", ["Condition/dx"], lifecycle="completed")
    done["achievementStatus"] = {"coding": [{"code": "achieved"}]}
    apply_change(row, done)
    assert (row.goals["Goal/g1"].lifecycle, row.goals["Goal/g1"].achievement) == ("completed", "achieved")


def test_closed_plans_have_nothing_remaining():
    world, scores = course_world()
    plan = world.plan
    plan["status"] = "revoked"
    row = full(world, scores)
    assert row.next_session is not None  # sessions 8-12 are still planned
    apply_change(row, plan)
    assert row.sessions_remaining == 0 and row.status == "revoked"
    assert row.next_session is None and "nextSession" not in params(row)  # nothing remains: no next one


def test_row_round_trips_through_json():
    world, scores = course_world()
    row = full(world, scores)
    data = json.loads(json.dumps(row.to_row()))
    assert PlanProgress.from_row(data).to_row() == row.to_row()
    assert len(json.dumps(data)) < 4000


def test_plans_affected_follows_the_links():
    world, scores = course_world()
    lk = world.lookup
    assert plans_affected(world.plan, lk) == ["plan"]
    assert plans_affected(world.course, lk) == ["plan"]
    assert plans_affected(world.session(3), lk) == ["plan"]
    assert plans_affected(scores[0], lk) == ["plan"]
    assert plans_affected(phq9("ox", 3, "2025-01-06", plan=None, encounter="Encounter/s2"), lk) == ["plan"]
    assert plans_affected(lk.read("Goal", "g1"), lk) == ["plan"]
    assert plans_affected(lk.read("Condition", "pa1"), lk) == ["plan"]
    assert plans_affected({"resourceType": "Encounter", "id": "x"}, lk) == []


def test_scores_are_ordered_in_time_whatever_offset_they_were_written_with():
    """20 at 01:00+05:00 on 4 March is 20:00Z on 3 March: before 4 at 22:00Z. Text order said otherwise."""
    world = World(sessions=12)
    early = phq9("e", 20, "2025-03-04T01:00:00+05:00")
    late = phq9("l", 4, "2025-03-03T22:00:00Z")
    p = params(compute_progress(world.plan, course_requests=[world.course], scores=[late, early]))
    assert p["phq9Baseline"]["value"] == 20 and p["phq9Latest"]["value"] == 4
    assert p["phq9Change"] == -16 and p["phq9Response"] is True and p["phq9Remission"] is True
    # a partial date counts from its first instant, a date from its midnight
    for partial, full_instant in (("2025-01", "2025-01-15T09:00:00Z"), ("2024", "2024-06-15T09:00:00Z"),
                                  ("2025-01-06", "2025-02-15T09:00:00Z")):
        p = params(compute_progress(world.plan, course_requests=[world.course],
                                    scores=[phq9("a", 10, full_instant), phq9("b", 20, partial)]))
        assert (p["phq9Baseline"]["value"], p["phq9Latest"]["value"]) == (20, 10), partial


def test_the_next_session_is_the_earliest_in_time_whatever_offset_it_was_written_with():
    world = World(sessions=12)
    world.hold(*range(1, 8))
    s8, s9 = world.session(8), world.session(9)
    s8["period"] = {"start": "2025-03-04T01:00:00+05:00"}  # 2025-03-03T20:00Z
    s9["period"] = {"start": "2025-03-03T22:00:00Z"}
    sessions = [world.session(n) for n in range(1, 13) if n not in (8, 9)] + [s8, s9]
    p = params(compute_progress(world.plan, course_requests=[world.course], sessions=sessions))
    assert p["nextSession"]["sessionNumber"] == 8, p["nextSession"]


def test_another_patients_sessions_and_scores_or_impossible_totals_are_not_this_courses_progress():
    """Linked to the plan without claiming the IPT profiles (so no rule refused them), they are ignored."""
    world, scores = course_world()
    other = phq9("other", 2, "2025-03-01T09:00:00Z", patient="Patient/someone-else")
    impossible = phq9("high", 40, "2025-03-02T09:00:00Z")
    for obs in (other, impossible):
        del obs["meta"]
    stranger = world.session(8)
    stranger["subject"] = {"reference": "Patient/someone-else"}
    stranger["status"] = "finished"
    progress = full(world, scores)
    before = params(progress)
    for resource in (other, impossible, stranger):
        apply_change(progress, resource)
    assert params(progress) == {**before, "nextSession": params(progress).get("nextSession")}
    assert params(progress)["phq9Latest"]["value"] == 9 and params(progress)["sessionsAttended"] == 6
    assert "Encounter/s8" not in progress.sessions  # the stranger's version replaced the planned session 8
    # the ends of the PHQ-9 range count, and a linked session that names no subject is not a stranger's
    apply_change(progress, phq9("top", 27, "2025-03-03T09:00:00Z"))
    assert params(progress)["phq9Latest"]["value"] == 27
    unnamed = world.session(9)
    del unnamed["subject"]
    unnamed["status"] = "finished"
    apply_change(progress, unnamed)
    assert params(progress)["sessionsAttended"] == 7


def test_a_session_the_clinician_cancelled_is_not_missed_and_its_replacement_counts():
    """OperationDefinition ipt-progress: missed are no-shows and patient cancellations."""
    from ipt_fhir.domain.canonical import CS_ATTENDANCE, EXT_ATTENDANCE, canonical

    world, scores = course_world()  # session 6 cancelled, no attendance given: missed
    base = "http://example.org/fhir"
    progress = full(world, scores)
    assert params(progress)["sessionsMissed"] == 1 and params(progress)["sessionsRemaining"] == 5
    cancelled = world.session(6)
    cancelled["extension"] = cancelled.get("extension", []) + [{
        "url": canonical(base, "StructureDefinition", EXT_ATTENDANCE),
        "valueCoding": {"system": canonical(base, "CodeSystem", CS_ATTENDANCE), "code": "cancelled-by-clinician"}}]
    cancelled["status"] = "cancelled"
    apply_change(progress, cancelled)
    assert params(progress)["sessionsMissed"] == 0 and params(progress)["sessionsRemaining"] == 6
    replacement = dict(world.session(6), id="s6b", status="finished")  # session 6, held another day
    apply_change(progress, replacement)
    p = params(progress)
    assert (p["sessionsAttended"], p["sessionsMissed"], p["sessionsRemaining"]) == (7, 0, 5)
    no_show = dict(cancelled, extension=[dict(cancelled["extension"][-1], valueCoding={
        "system": canonical(base, "CodeSystem", CS_ATTENDANCE), "code": "no-show"})])
    apply_change(progress, no_show)
    assert params(progress)["sessionsMissed"] == 1
