"""Repository of the IPT read model (table ipt_plan_progress): one JSON row per IPT CarePlan.

Functions take the Connection of the caller's unit of work, so the row commits or rolls back with the
resource writes that changed it.
"""
from __future__ import annotations

from datetime import datetime, timezone

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from .ipt_tables import ipt_plan_progress_table as t
from .tables import resource_table as resource


def get(conn: Connection, careplan_id: str, *, for_update: bool = False) -> dict | None:
    """The stored row (PlanProgress.to_row() form) or None. `for_update` locks it on PostgreSQL, so two
    concurrent session writes for one plan fold their changes in one after the other (SQLite writers
    are serialised by BEGIN IMMEDIATE already)."""
    stmt = sa.select(t.c.progress).where(t.c.careplan_id == careplan_id)
    if for_update and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    value = conn.execute(stmt).scalar()
    return None if value is None else orjson.loads(value)


def put(conn: Connection, careplan_id: str, subject: str | None, row: dict) -> None:
    values = {"careplan_id": careplan_id, "subject": subject,
              "progress": orjson.dumps(row).decode(), "updated": datetime.now(timezone.utc)}
    insert = (postgresql.insert(t) if conn.dialect.name == "postgresql" else sqlite.insert(t)).values(**values)
    conn.execute(insert.on_conflict_do_update(
        index_elements=[t.c.careplan_id],
        set_={"subject": insert.excluded.subject, "progress": insert.excluded.progress,
              "updated": insert.excluded.updated}))


def delete(conn: Connection, careplan_id: str) -> None:
    conn.execute(t.delete().where(t.c.careplan_id == careplan_id))


def lock(conn: Connection, careplan_id: str) -> None:
    """Hold the plan's row until the caller commits, creating it if there is none (PostgreSQL; SQLite
    writers are serialised already): a concurrent write for the plan then waits in get(for_update=True)
    and folds its change into what the caller put, and the caller sees what such a write committed
    before. The row created here is the caller's to fill with put() in the same unit of work."""
    if conn.dialect.name != "postgresql":
        return
    conn.execute(postgresql.insert(t).values(careplan_id=careplan_id, subject=None, progress="{}",
                                             updated=datetime.now(timezone.utc))
                 .on_conflict_do_nothing(index_elements=[t.c.careplan_id]))
    get(conn, careplan_id, for_update=True)


def delete_without_plan(conn: Connection) -> None:
    """Drop the rows of plans that are no longer stored (deleted, or never were)."""
    conn.execute(t.delete().where(~sa.exists().where(
        resource.c.resource_type == "CarePlan", resource.c.id == t.c.careplan_id, resource.c.deleted.is_(False))))
