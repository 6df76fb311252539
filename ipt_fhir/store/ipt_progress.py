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


def delete_all(conn: Connection) -> None:
    conn.execute(t.delete())
