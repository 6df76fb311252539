"""Progress figures against hand-computed cases, and a full course through the public API:
plan -> 16 sessions with PHQ-9 scores -> termination -> completed."""
from __future__ import annotations

from tests.domain.world import World, goal, phq9, problem_area

from .helpers import FHIR_JSON, load_world, progress, put, read

PARAMS = {"resourceType": "Parameters", "parameter": [
    {"name": "subject", "valueReference": {"reference": "Patient/p1"}},
    {"name": "practitioner", "valueReference": {"reference": "Practitioner/t1"}},
    {"name": "start", "valueDate": "2025-01-06"}, {"name": "sessionCount", "valueInteger": 16},
    {"name": "weekday", "valueCode": "mon"}, {"name": "store", "valueBoolean": True}]}


def _hold(client, session: dict, status: str = "finished") -> None:
    session["status"] = status
    r = put(client, session)
    assert r.status_code == 200, r.text


def test_progress_figures_match_a_hand_computed_case(client):
    load_world(client, World(sessions=12))
    sessions = {n: read(client, f"Encounter/s{n}") for n in range(1, 13)}
    for n in (1, 2, 3):
        _hold(client, sessions[n])
    _hold(client, sessions[4], "cancelled")
    _hold(client, sessions[5])
    # PHQ-9: 18 at session 1, 15 at session 3, 8 at session 5; a preliminary 2 does not count.
    for oid, value, n, status in (("o1", 18, 1, "final"), ("o3", 15, 3, "final"), ("o5", 8, 5, "final"),
                                  ("o6", 2, 5, "preliminary")):
        obs = phq9(oid, value, sessions[n]["period"]["start"], encounter=f"Encounter/s{n}", status=status)
        assert put(client, obs).status_code == 201
    figures = progress(client, "plan")
    # Hand-computed: 12 ordered; 4 attended (1, 2, 3, 5), 1 missed (4); 12 - 4 - 1 = 7 remaining.
    assert figures["sessionsPlanned"] == 12
    assert figures["sessionsAttended"] == 4
    assert figures["sessionsMissed"] == 1
    assert figures["sessionsRemaining"] == 7
    assert figures["currentPhase"]["code"] == "middle"  # session 5 of 12 is past the 3-session initial phase
    assert figures["phq9Baseline"]["value"] == 18 and figures["phq9Latest"]["value"] == 8
    assert figures["phq9Change"] == -10
    assert figures["phq9Response"] is True  # 8 <= 18 / 2
    assert figures["phq9Remission"] is False  # 8 >= 5
    assert figures["nextSession"]["sessionNumber"] == 6
    assert figures["problemArea"]["code"]["code"] == "role-dispute"


def test_progress_follows_deletes_and_corrections(client):
    load_world(client)
    s1 = read(client, "Encounter/s1")
    _hold(client, s1)
    put(client, phq9("o1", 20, s1["period"]["start"], encounter="Encounter/s1"))
    assert progress(client, "plan")["phq9Latest"]["value"] == 20
    put(client, phq9("o1", 14, s1["period"]["start"], encounter="Encounter/s1"))
    assert progress(client, "plan")["phq9Latest"]["value"] == 14
    assert client.delete("/fhir/Observation/o1").status_code in (200, 204)
    assert "phq9Latest" not in progress(client, "plan")
    assert progress(client, "plan")["sessionsAttended"] == 1


def test_progress_of_unknown_and_non_ipt_plans(client):
    assert client.get("/fhir/CarePlan/nope/$ipt-progress").status_code == 404
    plain = {"resourceType": "CarePlan", "id": "plain", "status": "active", "intent": "plan",
             "subject": {"reference": "Patient/p1"}}
    put(client, plain)
    assert client.get("/fhir/CarePlan/plain/$ipt-progress").status_code == 422
    load_world(client)
    client.delete("/fhir/CarePlan/plan")
    assert client.get("/fhir/CarePlan/plan/$ipt-progress").status_code == 410


def test_a_full_course_through_the_public_api(client):
    put(client, {"resourceType": "Patient", "id": "p1"})
    put(client, {"resourceType": "Practitioner", "id": "t1"})
    # 1. plan: $apply stores CarePlan, course and 16 planned sessions in one transaction
    applied = client.post("/fhir/PlanDefinition/ipt-standard-individual/$apply", json=PARAMS)
    assert applied.status_code == 200, applied.text
    plan_id = next(e["resource"]["id"] for e in applied.json()["entry"] if e["resource"]["resourceType"] == "CarePlan")
    course = client.get("/fhir/ServiceRequest", params={"based-on": f"CarePlan/{plan_id}"}).json()["entry"][0]["resource"]
    sessions = client.get("/fhir/Encounter", params={"based-on": f"ServiceRequest/{course['id']}", "_count": 50,
                                                     "_sort": "date"}).json()["entry"]
    sessions = [e["resource"] for e in sessions]
    assert len(sessions) == 16
    # 2. problem area and goal from the initial phase, linked to the plan
    area = problem_area("area1")
    assert put(client, area).status_code == 201
    g = goal("goal1", ["Condition/area1"])
    assert put(client, g).status_code == 201
    plan = read(client, f"CarePlan/{plan_id}")
    plan["addresses"] = [{"reference": "Condition/area1"}]
    plan["goal"] = [{"reference": "Goal/goal1"}]
    r = put(client, plan)
    assert r.status_code == 200, r.text
    # 3. sixteen sessions, each held with a PHQ-9 score: 21 falling by one per session to 6, then 4
    scores = [21 - n for n in range(15)] + [4]
    for n, (session, score) in enumerate(zip(sessions, scores), start=1):
        _hold(client, session)
        obs = phq9(f"phq{n}", score, session["period"]["start"], plan=f"CarePlan/{plan_id}",
                   encounter=f"Encounter/{session['id']}")
        r = client.put(f"/fhir/Observation/phq{n}", json=obs, headers=FHIR_JSON)
        assert r.status_code == 201, r.text
        figures = progress(client, plan_id)
        assert figures["sessionsAttended"] == n
    # 4. termination: the course and the plan are completed
    course = read(client, f"ServiceRequest/{course['id']}")
    course["status"] = "completed"
    assert put(client, course).status_code == 200
    g = read(client, "Goal/goal1")
    g["lifecycleStatus"] = "completed"
    g["achievementStatus"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/goal-achievement",
                                          "code": "achieved"}]}
    assert put(client, g).status_code == 200
    plan = read(client, f"CarePlan/{plan_id}")
    plan["status"] = "completed"
    r = put(client, plan)
    assert r.status_code == 200, r.text
    figures = progress(client, plan_id)
    assert figures["status"] == "completed"
    assert (figures["sessionsPlanned"], figures["sessionsAttended"], figures["sessionsRemaining"]) == (16, 16, 0)
    assert figures["currentPhase"]["code"] == "termination"
    assert figures["phq9Baseline"]["value"] == 21 and figures["phq9Latest"]["value"] == 4
    assert figures["phq9Response"] is True and figures["phq9Remission"] is True
    assert figures["goal"]["achievementStatus"] == "achieved"
    # the narrative was regenerated with the plan's last write
    div = read(client, f"CarePlan/{plan_id}")["text"]["div"]
    assert "16 attended of 16 planned" in div and "in remission" in div and "completed" in div


def test_a_client_narrative_is_kept(client):
    world = load_world(client)
    plan = world.plan
    plan["text"] = {"status": "additional", "div": '<div xmlns="http://www.w3.org/1999/xhtml">Ours</div>'}
    assert put(client, plan).status_code == 200
    assert read(client, "CarePlan/plan")["text"]["div"].endswith(">Ours</div>")


def test_a_completed_or_revoked_course_plans_only_the_sessions_held_under_it(client, database):
    """request-status: a revoked course is terminated ("no further activity should occur") and a completed
    one fully performed. sessionsPlanned used to keep every session such a course ordered, so a revoked
    extension left sessionsRemaining as if it would still be delivered."""
    from ipt_fhir.domain import progress as prog
    from ipt_fhir.store import ipt_progress

    world = load_world(client, World(sessions=12))
    for n in (1, 2):
        _hold(client, read(client, f"Encounter/s{n}"))
    extension = {**world.course, "id": "extension", "quantityQuantity": {"value": 4}}  # 4 more sessions
    r = put(client, extension)
    assert r.status_code == 201, r.text
    figures = progress(client, "plan")
    assert (figures["sessionsPlanned"], figures["sessionsRemaining"]) == (16, 14)
    assert put(client, {**extension, "status": "revoked"}).status_code == 200
    figures = progress(client, "plan")
    assert (figures["sessionsPlanned"], figures["sessionsRemaining"]) == (12, 10)

    # the first course completed early, after its two sessions: nothing remains of it
    assert put(client, {**read(client, "ServiceRequest/course"), "status": "completed"}).status_code == 200
    figures = progress(client, "plan")
    assert (figures["sessionsPlanned"], figures["sessionsAttended"], figures["sessionsRemaining"]) == (2, 2, 0)

    # a session that names a referral first is still counted under its plan's course
    referral = {"resourceType": "ServiceRequest", "id": "referral", "status": "active", "intent": "order",
                "subject": {"reference": "Patient/p1"}, "code": {"text": "psychotherapy referral"}}
    assert put(client, referral).status_code == 201
    s3 = read(client, "Encounter/s3")
    s3["basedOn"] = [{"reference": "ServiceRequest/referral"}, {"reference": "ServiceRequest/course"}]
    _hold(client, s3)
    figures = progress(client, "plan")
    assert (figures["sessionsPlanned"], figures["sessionsAttended"], figures["sessionsRemaining"]) == (3, 3, 0)

    # a row of the layout before (no course per session) is computed again from the store when read
    with database.write() as conn:
        row = ipt_progress.get(conn, "plan")
        ipt_progress.put(conn, "plan", row["subject"], {**row, "v": prog.ROW_VERSION - 1, "closed_courses": []})
    assert progress(client, "plan") == figures
