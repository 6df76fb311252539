"""Set-at-a-time reads and rewrites for transactions and bulk import: current versions of many ids,
version replacement and index-row deletion per statement instead of one round trip per row (new rows
are appended by bulk_write.py). Same tables, same unit of work as the row-at-a-time repository
(store/resources.py); callers guarantee the ids are locked."""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .resources import StoredVersion
from .search_tables import INDEX_DELETE_SQL
from .tables import resource_table as resource


def replace_versions(conn: Connection, versions: list[tuple[StoredVersion, int]]) -> int:
    """UPDATE current rows over their expected versions; returns how many rows matched."""
    if not versions:
        return 0
    stmt = (resource.update()
            .where(resource.c.resource_type == sa.bindparam("t"), resource.c.id == sa.bindparam("i"),
                   resource.c.version_id == sa.bindparam("expected"))
            .values(version_id=sa.bindparam("v"), last_updated=sa.bindparam("lu"),
                    deleted=sa.bindparam("d"), content=sa.bindparam("c")))
    result = conn.execute(stmt, [{"t": v.resource_type, "i": v.id, "expected": e, "v": v.version_id,
                                  "lu": v.last_updated, "d": v.deleted, "c": v.content} for v, e in versions])
    return result.rowcount


def delete_index_rows(conn: Connection, keys: list[tuple[str, str]]) -> None:
    if not keys:
        return
    cur = conn.connection.dbapi_connection.cursor()
    try:
        for sql in INDEX_DELETE_SQL[conn.dialect.name].values():
            cur.executemany(sql, keys)
    finally:
        cur.close()


def current_versions(conn: Connection, keys: list[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, bool, bytes | None]]:
    """(type, id) → (version_id, deleted, content) for those that exist."""
    out: dict[tuple[str, str], tuple[int, bool, bytes | None]] = {}
    by_type: dict[str, list[str]] = {}
    for t, i in keys:
        by_type.setdefault(t, []).append(i)
    if conn.dialect.name == "postgresql":
        # One statement per type with the ids as one array parameter: a 1000-item IN list costs more to
        # build, send and plan than the lookup itself (this runs at the start of every import batch).
        with conn.connection.dbapi_connection.cursor() as cur:
            for t, ids in by_type.items():
                cur.execute("SELECT id, version_id, deleted, content FROM resource "
                            "WHERE resource_type = %s AND id = ANY(%s)", (t, ids))
                for rid, vid, deleted, content in cur:
                    out[(t, rid)] = (vid, deleted, content)
        return out
    for t, ids in by_type.items():
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            for rid, vid, deleted, content in conn.execute(
                    sa.select(resource.c.id, resource.c.version_id, resource.c.deleted, resource.c.content)
                    .where(resource.c.resource_type == t, resource.c.id.in_(chunk))):
                out[(t, rid)] = (vid, deleted, content)
    return out


def existing_keys(conn: Connection, keys: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Which of these (type, id) have a current row (deleted or not)."""
    by_type: dict[str, list[str]] = {}
    for t, i in keys:
        by_type.setdefault(t, []).append(i)
    out = []
    for t, ids in by_type.items():
        for start in range(0, len(ids), 500):
            out += [(t, rid) for rid in conn.execute(sa.select(resource.c.id).where(
                resource.c.resource_type == t, resource.c.id.in_(ids[start:start + 500]))).scalars()]
    return out


def any_stored(conn: Connection, resource_type: str) -> bool:
    return conn.execute(sa.select(sa.literal(1)).where(resource.c.resource_type == resource_type).limit(1)).first() \
        is not None


# --- bulk jobs -------------------------------------------------------------------------------------

def create_job(conn: Connection, job_id: str, kind: str, request: str, now) -> None:  # noqa: ANN001
    from .bulk_tables import bulk_job_table as jobs

    conn.execute(jobs.insert().values(id=job_id, kind=kind, status="queued", request=request,
                                      created=now, updated=now))


def get_job(conn: Connection, job_id: str) -> dict | None:
    from .bulk_tables import bulk_job_table as jobs

    row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).mappings().first()
    return dict(row) if row else None


def update_job(conn: Connection, job_id: str, now, *, only_if_status: tuple[str, ...] | None = None,  # noqa: ANN001
               **values: object) -> bool:
    from .bulk_tables import bulk_job_table as jobs

    stmt = jobs.update().where(jobs.c.id == job_id)
    if only_if_status:
        stmt = stmt.where(jobs.c.status.in_(only_if_status))
    return conn.execute(stmt.values(updated=now, **values)).rowcount == 1


def jobs_with_status(conn: Connection, kind: str, statuses: tuple[str, ...]) -> list[str]:
    from .bulk_tables import bulk_job_table as jobs

    return [r[0] for r in conn.execute(
        sa.select(jobs.c.id).where(jobs.c.kind == kind, jobs.c.status.in_(statuses)).order_by(jobs.c.created))]


def delete_job(conn: Connection, job_id: str) -> None:
    from .bulk_tables import bulk_job_table as jobs

    conn.execute(jobs.delete().where(jobs.c.id == job_id))
