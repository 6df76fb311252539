"""SQLite: new resources whose search index rows are not in the index yet, indexed many at a time.

Why: a create's ~15 index rows cost it twice. Extracting them (index_rows) is a tenth of the event
loop's time per create, and the loop is what a SQLite server's writes queue on; inserting them one
resource at a time into the value-indexed tables dirties about 36 B-tree pages per commit. So a
resource's first version only records its key in `search_pending`, and its rows are extracted from its
stored JSON and inserted later, many resources at a time, so that rows share pages:
- by the background mover (checkpoint.py), with the extraction done by the index worker process
  (index_worker.py) on another core, outside this process's interpreter lock;
- or, wherever the rows are needed at once or no worker runs, in the calling thread (`move` without
  rows given).

The index stays exact for everything that reads it: each reader first moves whatever is pending,
- `Database.read()` checks in its snapshot's first statement, and if rows are pending moves them and
  starts a new snapshot,
- `Database.write()` at the start of its unit of work,
- and inside the units of plain creates, updates, patches and deletes (which do neither) searches
  (`search.find_ids`, a search given a connection) call `bring_current` on the writer's connection.

A pending resource's rows are therefore those of its current stored JSON: whatever changes its rows
(update, patch, delete, $meta-add/-delete) takes it off the list (`forget`) in the unit of work that
writes its new rows. Rows extracted from an older snapshot (the worker's) are inserted only for the
resources still pending, under the same key and pending row, when they arrive; the others were indexed
or forgotten meanwhile. PostgreSQL writes every row to
the index tables directly: nothing is ever pending there.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from sqlalchemy.engine import Connection

from ipt_fhir.fhir.jsonio import dump_json, load_stored
from ipt_fhir.fhir.search.indexer import index_rows

from .search_tables import INDEX_TABLES, pending_index_table

# Marks the writer's connection (Database._transaction): only a connection inside a write transaction
# can move rows; a read connection was brought current before its snapshot began.
WRITER = "ipt_fhir.sqlite_writer"

_P = pending_index_table.name
_KINDS = tuple(INDEX_TABLES)
INSERT_SQL = f"INSERT INTO {_P} (resource_type, resource_id) VALUES (?, ?)"
ANY_PENDING_SQL = f"SELECT 1 FROM {_P} LIMIT 1"
# A scan, but of the few resources created since the last move: an index would cost every create more.
_FORGET_SQL = f"DELETE FROM {_P} WHERE resource_type = ? AND resource_id = ?"

# The oldest pending resources with their current JSON (NULL once deleted: nothing to index).
_CONTENT_SQL = (f"SELECT p.rowid, p.resource_type, p.resource_id, r.content FROM {_P} p "
                "LEFT JOIN resource r ON r.resource_type = p.resource_type AND r.id = p.resource_id "
                "ORDER BY p.rowid LIMIT ?")
_ALL = -1  # SQLite's LIMIT -1: no limit

# A pending entry of an extraction, as JSON: [pending rowid, resource_type, resource_id]. The rowid finds
# the row; the key makes sure it is still the same resource's (SQLite reuses the rowids of an emptied table).
_KEY_MATCH = ("p.rowid = json_extract(j.value, '$[0]') AND p.resource_type = json_extract(j.value, '$[1]') "
              "AND p.resource_id = json_extract(j.value, '$[2]')")


@dataclass(frozen=True)
class Extracted:
    """The index rows of some pending resources, ready for `move`: `keys`, a JSON array of their pending
    entries; `rows`, per index table kind with rows, a JSON array of [pending entry's three values,
    *the table's columns after resource_type and resource_id]."""
    keys: str
    rows: dict[str, str]
    count: int


def extract(pending: Iterable[tuple[int, str, str, bytes | None]]) -> Extracted:
    """Index rows of pending resources given as (rowid, resource_type, resource_id, stored JSON or None)."""
    keys: list[list] = []
    per_kind: dict[str, list[list]] = {}
    for rowid, resource_type, resource_id, content in pending:
        key = [rowid, resource_type, resource_id]
        keys.append(key)
        if content is None:
            continue
        for kind, kind_rows in index_rows(resource_type, load_stored(content)).items():
            if kind_rows:
                per_kind.setdefault(kind, []).extend([*key, *row] for row in dict.fromkeys(kind_rows))
    return Extracted(dump_json(keys).decode(), {k: dump_json(v).decode() for k, v in per_kind.items()}, len(keys))


def extract_oldest(driver_connection, limit: int | None = None) -> Extracted:  # noqa: ANN001 - sqlite3
    """The `limit` oldest pending resources (all without a limit), extracted here, from what
    `driver_connection` reads."""
    cur = driver_connection.cursor()
    try:
        return extract(cur.execute(_CONTENT_SQL, (_ALL if limit is None else limit,)).fetchall())
    finally:
        cur.close()


def _move_sql() -> dict[str, str]:
    """Per index table: one INSERT ... SELECT expanding an extraction's rows of that table, for the
    entries still pending."""
    out = {}
    for kind, table in INDEX_TABLES.items():
        columns = [c.name for c in table.columns]
        values = [f"json_extract(j.value, '$[{i}]')" for i in range(3, len(columns) + 1)]
        out[kind] = (f"INSERT INTO {table.name} ({', '.join(columns)}) "
                     f"SELECT p.resource_type, p.resource_id, {', '.join(values)} "
                     f"FROM json_each(?) j JOIN {_P} p ON {_KEY_MATCH}")
    return out


_MOVE_SQL = _move_sql()
_DONE_SQL = f"DELETE FROM {_P} WHERE rowid IN (SELECT p.rowid FROM json_each(?) j JOIN {_P} p ON {_KEY_MATCH})"


def append(conn: Connection, resource_type: str, resource_id: str) -> None:
    """Note a resource created in this unit of work as pending."""
    conn.connection.driver_connection.execute(INSERT_SQL, (resource_type, resource_id))


def pending(driver_connection) -> bool:  # noqa: ANN001 - a sqlite3.Connection
    return driver_connection.execute(ANY_PENDING_SQL).fetchone() is not None


def move(driver_connection, limit: int | None = None, extracted: Extracted | None = None) -> int:  # noqa: ANN001
    """In a write transaction: index the pending resources `extracted` covers that are still pending, or
    without it every pending resource (the `limit` oldest), extracted here. Returns how many."""
    if extracted is None:
        extracted = extract_oldest(driver_connection, limit)
    if not extracted.count:
        return 0
    cur = driver_connection.cursor()
    try:
        for kind, rows in extracted.rows.items():
            cur.execute(_MOVE_SQL[kind], (rows,))
        cur.execute(_DONE_SQL, (extracted.keys,))
        return cur.rowcount
    finally:
        cur.close()


def forget(conn: Connection, resource_type: str, resource_id: str) -> None:
    """On the SQLite writer's connection: a resource whose index rows the caller replaces or removes in
    this unit of work is no longer pending (a pending resource has none yet)."""
    if conn.info.get(WRITER):
        conn.connection.driver_connection.execute(_FORGET_SQL, (resource_type, resource_id))


def bring_current(conn: Connection) -> None:
    """Make the index complete for what `conn` reads next. On the SQLite writer's connection this moves
    pending rows inside the caller's unit of work; elsewhere there is nothing to do (PostgreSQL, or a
    read connection: Database.read() moved them before the snapshot)."""
    if conn.info.get(WRITER):
        move(conn.connection.driver_connection)
