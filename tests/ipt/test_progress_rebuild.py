"""services/ipt/progress_rebuild: every IPT CarePlan gets its row back, however many batches that takes;
a plain (non-IPT) CarePlan gets none."""
from __future__ import annotations

from fastapi.testclient import TestClient

from ipt_fhir.app import create_app
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
