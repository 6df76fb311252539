"""services/ipt/progress_rebuild: every IPT CarePlan gets its row back, however many batches that takes;
a plain (non-IPT) CarePlan gets none."""
from __future__ import annotations

import threading
import time

from fastapi.testclient import TestClient

from ipt_fhir.app import create_app
from ipt_fhir.services.ipt import progress_rebuild
from ipt_fhir.services.ipt.progress_rebuild import rebuild_progress_rows
from ipt_fhir.store import ipt_progress
from tests.domain.world import World
from tests.ipt.helpers import load_world, progress, put


def test_rebuild_pages_through_every_plan_and_skips_plans_without_the_ipt_profile(settings, database):
    with TestClient(create_app(settings, database)) as client:
        load_world(client, World(sessions=2))
        plan = World(sessions=2).resources[0]
        for extra in ("plan2", "plan3"):
            assert put(client, {**plan, "id": extra}).status_code in (200, 201)
        plain = {k: v for k, v in plan.items() if k != "meta"}
        assert put(client, {**plain, "id": "not-ipt"}).status_code in (200, 201)
        expected = {p: progress(client, p) for p in ("plan", "plan2", "plan3")}

        assert rebuild_progress_rows(database, batch=1) == 3  # one plan per batch: four batches, three IPT
        with database.read() as conn:
            assert all(ipt_progress.get(conn, p) is not None for p in expected)
            assert ipt_progress.get(conn, "not-ipt") is None
        assert {p: progress(client, p) for p in expected} == expected


def test_a_session_held_while_the_rebuild_computes_its_plan_is_counted(settings, database, monkeypatch):
    """`db reindex` on a running server: a session marked held after the rebuild computed its plan's
    progress, but before the rebuild wrote it, is not lost under the rebuilt row; the write waits for the
    plan's row and folds its change in (before, the rows were dropped first, so such a write found no row
    to wait for and the rebuild overwrote it: sessionsAttended 0)."""
    with TestClient(create_app(settings, database)) as client:
        world = load_world(client, World(sessions=4))
        before = progress(client, "plan")["sessionsAttended"]
        held = {**world.session(1), "status": "finished"}
        compute = progress_rebuild.fresh_progress
        writer: dict = {}

        def compute_then_hold_a_session(plan, lookup):  # noqa: ANN001, ANN202
            row = compute(plan, lookup)
            writer["thread"] = threading.Thread(target=lambda: writer.update(status=put(client, held).status_code))
            writer["thread"].start()
            time.sleep(0.5)  # unlocked, the write commits well within this
            return row

        monkeypatch.setattr(progress_rebuild, "fresh_progress", compute_then_hold_a_session)
        assert rebuild_progress_rows(database) == 1
        writer["thread"].join(30)
        assert writer["status"] == 200
        assert progress(client, "plan")["sessionsAttended"] == before + 1


def test_a_score_based_on_its_course_counts_in_the_row_computed_from_the_store_too(settings, database):
    """The score profile lets basedOn name the course ServiceRequest. Such a score of a session counts for
    the session's plan as it is written; the row computed from the store (a rebuild, `db reindex`) used to
    leave it out, because only scores without any basedOn were read through their session."""
    from tests.domain.world import phq9

    with TestClient(create_app(settings, database)) as client:
        world = load_world(client, World(sessions=4))
        for n in (1, 2):
            assert put(client, {**world.session(n), "status": "finished"}).status_code == 200
        assert put(client, phq9("base", 20, "2025-01-06T10:00:00Z", encounter="Encounter/s1")).status_code == 201
        late = phq9("late", 4, "2025-01-13T10:00:00Z", plan="ServiceRequest/course", encounter="Encounter/s2")
        assert put(client, late).status_code == 201
        written = progress(client, "plan")
        assert written["phq9Latest"]["value"] == 4
        assert rebuild_progress_rows(database) == 1
        assert progress(client, "plan") == written


def test_a_score_of_the_course_alone_counts_for_its_plan_as_written_and_as_rebuilt(settings, database):
    """A PHQ-9 whose basedOn names only the course ServiceRequest (no plan, no session) is one of the
    course's scores, as the score profile allows: it used to be accepted and left out, so a patient in
    remission read as unchanged. A score naming another patient's course is refused."""
    from tests.domain.world import phq9

    with TestClient(create_app(settings, database)) as client:
        load_world(client, World(sessions=4))
        assert put(client, phq9("base", 20, "2025-01-06T10:00:00Z")).status_code == 201
        assert put(client, phq9("late", 3, "2025-03-05T10:00:00Z", plan="ServiceRequest/course")).status_code == 201
        written = progress(client, "plan")
        assert written["phq9Latest"]["value"] == 3
        assert written["phq9Remission"] is True
        assert rebuild_progress_rows(database) == 1
        assert progress(client, "plan") == written

        other = phq9("other", 3, "2025-03-06T10:00:00Z", plan="ServiceRequest/course", patient="Patient/p2")
        r = put(client, other)
        assert r.status_code == 422, r.text
        assert "course ServiceRequest/course" in r.text
        missing = phq9("gone", 3, "2025-03-06T10:00:00Z", plan="ServiceRequest/nope")
        r = put(client, missing)
        assert r.status_code == 422 and "ServiceRequest/nope does not exist" in r.text
