"""Rebuilding the IPT progress read model (table ipt_plan_progress) from the stored resources.

Each write keeps the rows current one change at a time (hook.py) and nothing ever recomputes them, so a
row an older version built wrongly (one that folded in another patient's sessions or scores) or a row
lost stays that way until rebuilt: `ipt-fhir db reindex` runs this after the search indexes.

Rows are dropped first: until its plan's turn, $ipt-progress computes a plan without a row from the
store (operations.py) and the next write to the plan builds one, so the rebuild may run on a live server.
"""
from __future__ import annotations

from typing import Callable

from ipt_fhir.domain.canonical import CAREPLAN_PROFILE, claims_profile
from ipt_fhir.fhir.jsonio import load_stored
from ipt_fhir.store import ipt_progress
from ipt_fhir.store import resources as repo
from ipt_fhir.store.database import Database

from .hook import fresh_progress
from .lookup import StoreLookup


def rebuild_progress_rows(db: Database, progress: Callable[[int], None] | None = None, batch: int = 200) -> int:
    """Recompute the row of every stored IPT CarePlan; returns how many were written."""
    with db.write() as conn:
        ipt_progress.delete_all(conn)
    done, last = 0, ""
    while True:
        with db.read() as conn:
            ids = repo.live_ids_after(conn, "CarePlan", last, batch)
        if not ids:
            return done
        with db.write() as conn:
            lookup = StoreLookup(conn)
            for stored in repo.current_many(conn, "CarePlan", ids):
                plan = None if stored.deleted or stored.content is None else load_stored(stored.content)
                if plan is None or not claims_profile(plan, CAREPLAN_PROFILE):
                    continue
                # a write that built the row since the rows were dropped holds the lock until it commits
                ipt_progress.get(conn, plan["id"], for_update=True)
                row = fresh_progress(plan, lookup)
                ipt_progress.put(conn, plan["id"], row.subject, row.to_row())
                done += 1
        last = ids[-1]
        if progress:
            progress(done)
