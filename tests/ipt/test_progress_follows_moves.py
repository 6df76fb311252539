"""The progress read model when a course or a session joins or leaves a plan: the sessions of a course and
the scores of a session (those naming no plan themselves) go with it, so that the row always equals what
`ipt-fhir db reindex` rebuilds from the store, and agrees with the rules, which find sessions through the
plan's live courses. Before, deleting a course kept its held sessions in the row ([16, 3, 13] where a
rebuild said [16, 0, 16]) while the session-number rules no longer saw them."""
from __future__ import annotations

from fastapi.testclient import TestClient

from ipt_fhir.app import create_app
from ipt_fhir.services.ipt.progress_rebuild import rebuild_progress_rows
from tests.domain.world import World, phq9
from tests.ipt.helpers import load_world, progress, put, transaction


def _counts(client: TestClient, plan_id: str = "plan") -> tuple[int, int, int]:
    p = progress(client, plan_id)
    return p["sessionsPlanned"], p["sessionsAttended"], p["sessionsRemaining"]


def _assert_rebuild_agrees(client: TestClient, database, *plan_ids: str) -> None:
    before = {p: progress(client, p) for p in plan_ids}
    rebuild_progress_rows(database)
    assert {p: progress(client, p) for p in plan_ids} == before


def _with_held_sessions(client: TestClient, *numbers: int) -> World:
    world = load_world(client, World(sessions=12))
    for n in numbers:
        assert put(client, {**world.session(n), "status": "finished"}).status_code == 200
    return world


def test_deleting_a_course_takes_its_sessions_out_of_the_plan(settings, database):
    with TestClient(create_app(settings, database)) as client:
        _with_held_sessions(client, 1, 2, 3)
        assert _counts(client)[1] == 3

        assert client.delete("/fhir/ServiceRequest/course").status_code in (200, 204)

        assert _counts(client)[1] == 0  # the sessions of a deleted course are no longer the plan's
        _assert_rebuild_agrees(client, database, "plan")


def test_a_course_re_pointed_to_another_plan_takes_its_sessions_along(settings, database):
    with TestClient(create_app(settings, database)) as client:
        world = _with_held_sessions(client, 1, 2)
        assert put(client, {**world.plan, "id": "plan2"}).status_code == 201
        assert _counts(client, "plan2")[1] == 0

        course = {**world.course, "basedOn": [{"reference": "CarePlan/plan2"}]}
        assert put(client, course).status_code == 200, put(client, course).text

        assert _counts(client, "plan")[1] == 0
        assert _counts(client, "plan2")[1] == 2
        _assert_rebuild_agrees(client, database, "plan", "plan2")


def test_deleting_a_session_takes_the_scores_recorded_in_it_along(settings, database):
    with TestClient(create_app(settings, database)) as client:
        _with_held_sessions(client, 1)
        score = phq9("in-session", 11, "2026-01-05T10:30:00+01:00", plan=None, encounter="Encounter/s1")
        assert put(client, score).status_code == 201
        assert progress(client, "plan")["phq9Latest"]["value"] == 11

        assert client.delete("/fhir/Encounter/s1").status_code in (200, 204)

        assert "phq9Latest" not in progress(client, "plan")
        _assert_rebuild_agrees(client, database, "plan")


def test_a_score_written_before_its_session_in_one_transaction_counts(settings, database):
    """Transaction entries of one method are written in their Bundle order: a score whose session comes
    later in the Bundle names a session that does not exist yet when it is stored."""
    with TestClient(create_app(settings, database)) as client:
        world = load_world(client, World(sessions=12))
        session = {**world.session(1), "id": "late", "status": "finished"}
        score = phq9("before-its-session", 9, "2026-01-05T10:30:00+01:00", plan=None, encounter="Encounter/late")
        assert client.delete("/fhir/Encounter/s1").status_code in (200, 204)  # 'late' takes session 1's place

        r = client.post("/fhir", json=transaction([score, session]))
        assert r.status_code == 200, r.text

        assert progress(client, "plan")["phq9Latest"]["value"] == 9
        _assert_rebuild_agrees(client, database, "plan")
