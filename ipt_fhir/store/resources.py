"""Repository of versioned resources: all SQL on `resource`, `resource_history` and the
conditional-create keys. Functions take the Connection of the caller's unit of work."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from .database import Database, execute_raw, fetch_one
from .tables import conditional_key_table as keys
from .tables import history_table as history
from .tables import resource_table as resource


@dataclass(frozen=True, slots=True)
class StoredVersion:
    resource_type: str
    id: str
    version_id: int
    last_updated: datetime
    deleted: bool
    content: bytes | None


_CURRENT_SQL = "SELECT version_id, last_updated, deleted, content FROM resource WHERE resource_type = ? AND id = ?"


def current(conn: Connection, resource_type: str, resource_id: str, *,
            for_update: bool = False) -> StoredVersion | None:
    """The current version. `for_update`: for a unit of work that is about to replace it. PostgreSQL then
    locks the row until the unit ends, so concurrent updates, patches and deletes of one resource take
    turns instead of the later ones failing with 409 on the version they read; each sees the version its
    predecessor wrote. (SQLite's single writer already serialises whole units of work.)"""
    sql = _CURRENT_SQL + " FOR UPDATE" if for_update and conn.dialect.name != "sqlite" else _CURRENT_SQL
    row = fetch_one(conn, sql, (resource_type, resource_id))
    if row is None:
        return None
    return _stored(resource_type, resource_id, row)


def _stored(resource_type: str, resource_id: str, row: tuple) -> StoredVersion:
    last_updated = row[1] if isinstance(row[1], datetime) else datetime.fromisoformat(row[1])
    content = row[3] if row[3] is None or isinstance(row[3], bytes) else bytes(row[3])
    return StoredVersion(resource_type, resource_id, row[0], _utc(last_updated), bool(row[2]), content)


def read_current(db: Database, resource_type: str, resource_id: str) -> StoredVersion | None:
    """The current version, read outside any unit of work (the hot path of GET [type]/[id])."""
    row = db.fetch_one(_CURRENT_SQL, (resource_type, resource_id))
    return None if row is None else _stored(resource_type, resource_id, row)


_VERSION_UPDATED_SQL = ("SELECT last_updated FROM resource_history WHERE resource_type = ? AND id = ? "
                        "AND version_id = ?")


def version_updated(db: Database, resource_type: str, resource_id: str, version_id: int) -> datetime | None:
    """The lastUpdated of one version, read outside any unit of work (as read_current is)."""
    row = db.fetch_one(_VERSION_UPDATED_SQL, (resource_type, resource_id, version_id))
    if row is None:
        return None
    return _utc(row[0] if isinstance(row[0], datetime) else datetime.fromisoformat(row[0]))


def current_many(conn: Connection, resource_type: str, ids: list[str]) -> list[StoredVersion]:
    if not ids:
        return []
    rows = conn.execute(
        sa.select(resource.c.id, resource.c.version_id, resource.c.last_updated, resource.c.deleted, resource.c.content)
        .where(resource.c.resource_type == resource_type, resource.c.id.in_(ids))
    )
    return [StoredVersion(resource_type, r[0], r[1], _utc(r[2]), r[3], r[4]) for r in rows]


def live_after(conn: Connection, resource_type: str, after_id: str, limit: int) -> list[StoredVersion]:
    """The current versions of the not-deleted resources of a type after `after_id`, in id order (paging
    over all of them)."""
    rows = conn.execute(
        sa.select(resource.c.id, resource.c.version_id, resource.c.last_updated, resource.c.deleted, resource.c.content)
        .where(resource.c.resource_type == resource_type, resource.c.deleted.is_(False), resource.c.id > after_id)
        .order_by(resource.c.id).limit(limit))
    return [StoredVersion(resource_type, r[0], r[1], _utc(r[2]), r[3], r[4]) for r in rows]


def version(conn: Connection, resource_type: str, resource_id: str, version_id: int) -> StoredVersion | None:
    row = conn.execute(
        sa.select(history.c.last_updated, history.c.method, history.c.content).where(
            history.c.resource_type == resource_type,
            history.c.id == resource_id,
            history.c.version_id == version_id,
        )
    ).first()
    if row is None:
        return None
    return StoredVersion(resource_type, resource_id, version_id, _utc(row[0]), row[1] == "DELETE", row[2])


# The write path runs these statements once or twice per request: they go straight to the driver
# (see database.execute_raw), which costs a sixth of SQLAlchemy's execution pipeline.
_INSERT_RESOURCE = ("INSERT INTO resource (resource_type, id, version_id, last_updated, deleted, content) "
                    "VALUES (?, ?, ?, ?, ?, ?)")
_INSERT_HISTORY = ("INSERT INTO resource_history (resource_type, id, version_id, last_updated, method, content) "
                   "VALUES (?, ?, ?, ?, ?, ?)")
_REPLACE_RESOURCE = ("UPDATE resource SET version_id = ?, last_updated = ?, deleted = ?, content = ? "
                     "WHERE resource_type = ? AND id = ? AND version_id = ?")
_insert_key = keys.insert()


def insert_new(conn: Connection, v: StoredVersion, method: str) -> bool:
    """Insert the first row of (type, id). False when another writer got there first; the unit of work
    is then unusable (PostgreSQL aborts it) and the caller must end it, which every caller does."""
    try:
        execute_raw(conn, _INSERT_RESOURCE,
                    (v.resource_type, v.id, v.version_id, v.last_updated, v.deleted, v.content))
    except conn.dialect.loaded_dbapi.IntegrityError:
        return False
    _append_history(conn, v, method)
    return True


def replace(conn: Connection, v: StoredVersion, expected_version: int, method: str) -> bool:
    """Write version `v` over `expected_version`. False when the stored version moved on meanwhile
    (optimistic concurrency: the WHERE on version_id makes lost updates impossible)."""
    rowcount = execute_raw(conn, _REPLACE_RESOURCE, (
        v.version_id, v.last_updated, v.deleted, v.content, v.resource_type, v.id, expected_version))
    if rowcount != 1:
        return False
    _append_history(conn, v, method)
    return True


def _append_history(conn: Connection, v: StoredVersion, method: str) -> None:
    execute_raw(conn, _INSERT_HISTORY, (v.resource_type, v.id, v.version_id, v.last_updated, method, v.content))


def rewrite_version(conn: Connection, v: StoredVersion, current: bool) -> None:
    """Store new content for an existing version, keeping its number and time: $meta-add and $meta-delete
    change a version's meta in place (services/meta_operations.py). `current`: it is also the resource's
    current version."""
    execute_raw(conn, _REWRITE_HISTORY, (v.content, v.resource_type, v.id, v.version_id))
    if current:
        execute_raw(conn, _REWRITE_RESOURCE, (v.content, v.resource_type, v.id, v.version_id))


_REWRITE_HISTORY = "UPDATE resource_history SET content = ? WHERE resource_type = ? AND id = ? AND version_id = ?"
_REWRITE_RESOURCE = "UPDATE resource SET content = ? WHERE resource_type = ? AND id = ? AND version_id = ?"


# --- conditional create keys -------------------------------------------------------------------

def claim_conditional_key(conn: Connection, resource_type: str, criteria_hash: str, resource_id: str) -> bool:
    """False when another request holds the key; as with insert_new, the caller then ends the unit of work."""
    try:
        conn.execute(_insert_key, {"resource_type": resource_type, "criteria_hash": criteria_hash,
                                   "resource_id": resource_id})
        return True
    except IntegrityError:
        return False


def conditional_key_owner(conn: Connection, resource_type: str, criteria_hash: str) -> str | None:
    return conn.execute(sa.select(keys.c.resource_id).where(
        keys.c.resource_type == resource_type, keys.c.criteria_hash == criteria_hash)).scalar()


def release_conditional_key(conn: Connection, resource_type: str, criteria_hash: str) -> None:
    conn.execute(keys.delete().where(keys.c.resource_type == resource_type, keys.c.criteria_hash == criteria_hash))


def release_conditional_keys_of(conn: Connection, resource_type: str, resource_id: str) -> None:
    conn.execute(keys.delete().where(keys.c.resource_type == resource_type, keys.c.resource_id == resource_id))


# --- history -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class HistoryEntry:
    seq: int
    resource_type: str
    id: str
    version_id: int
    last_updated: datetime
    method: str
    content: bytes | None
    created: bool  # this version made the resource exist: a POST, a PUT of a new id or after a delete


def history_page(
    conn: Connection,
    *,
    resource_type: str | None,
    resource_id: str | None,
    since: datetime | None,
    at: tuple[datetime, datetime] | None,
    max_seq: int,
    offset: int,
    limit: int,
) -> tuple[list[HistoryEntry], int]:
    """Versions newest first, restricted to seq <= max_seq so that pages stay stable while others write."""
    h = history
    cond = [h.c.seq <= max_seq]
    if resource_type:
        cond.append(h.c.resource_type == resource_type)
    if resource_id:
        cond.append(h.c.id == resource_id)
    if since is not None:
        cond.append(h.c.last_updated >= since)
    if at is not None:
        start, end = at
        later = history.alias("later")
        # current at some point in [start, end): written before the end, not yet replaced at the start
        cond.append(h.c.last_updated < end)
        cond.append(~sa.exists().where(
            later.c.resource_type == h.c.resource_type, later.c.id == h.c.id,
            later.c.version_id > h.c.version_id, later.c.last_updated <= start,
        ))
    where = sa.and_(*cond)
    total = conn.execute(sa.select(sa.func.count()).select_from(h).where(where)).scalar_one()
    previous = history.alias("previous")
    created = sa.or_(h.c.version_id == 1, sa.exists().where(  # a POST always writes version 1
        previous.c.resource_type == h.c.resource_type, previous.c.id == h.c.id,
        previous.c.version_id == h.c.version_id - 1, previous.c.method == "DELETE"))
    rows = conn.execute(
        sa.select(h.c.seq, h.c.resource_type, h.c.id, h.c.version_id, h.c.last_updated, h.c.method, h.c.content,
                  sa.case((created, True), else_=False))
        .where(where).order_by(h.c.seq.desc()).offset(offset).limit(limit)
    )
    return [HistoryEntry(r[0], r[1], r[2], r[3], _utc(r[4]), r[5], r[6], bool(r[7])) for r in rows], total


def max_history_seq(conn: Connection) -> int:
    return conn.execute(sa.select(sa.func.coalesce(sa.func.max(history.c.seq), 0))).scalar_one()


def _utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes for timezone-aware columns; everything we store is UTC.
    from datetime import timezone

    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
