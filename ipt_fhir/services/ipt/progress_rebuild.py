"""Rebuilding the IPT progress read model (table ipt_plan_progress) from the stored resources.

Each write keeps the rows current one change at a time (hook.py) and nothing ever recomputes them, so a
row an older version built wrongly (one that folded in another patient's sessions or scores) or a row
lost stays that way until rebuilt: `ipt-fhir db reindex` runs this after the search indexes.

The rebuild may run on a live server: each plan's row is locked (ipt_progress.lock) before its progress
is computed, so a session or score written meanwhile either commits first and is seen, or waits and folds
its change into the rebuilt row. Rows of plans no longer stored, or no longer IPT plans, are dropped.
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
    done, last = 0, ""
    while True:
        with db.write() as conn:
            page = repo.live_after(conn, "CarePlan", last, batch)
            lookup = StoreLookup(conn)
            for stored in page:
                plan = load_stored(stored.content)
                if not claims_profile(plan, CAREPLAN_PROFILE):
                    ipt_progress.delete(conn, stored.id)
                    continue
                ipt_progress.lock(conn, stored.id)
                row = fresh_progress(plan, lookup)
                ipt_progress.put(conn, stored.id, row.subject, row.to_row())
                done += 1
        if not page:
            break
        last = page[-1].id
        if progress:
            progress(done)
    with db.write() as conn:
        ipt_progress.delete_without_plan(conn)
    return done
