"""SQLite: the search index rows of newly created resources, held back and moved into the index in batches.

Why: a create's ~15 index rows, inserted one resource at a time into the value-indexed tables, dirty
about 36 B-tree pages, each written to the WAL by that commit: a third of a create's cost (instruction
counts of the in-process create path). A resource's first version therefore stores its rows as one row
of `search_pending` (each index table's rows a JSON array; one page), and they move into the index
tables many resources at a time, expanded by SQLite's json_each: rows then share pages, and all of that
work runs inside SQLite, outside Python's interpreter lock.

The index stays exact for everything that reads it: each reader first moves whatever is pending,
- `Database.read()` checks in its snapshot's first statement, and if rows are pending moves them and
  starts a new snapshot,
- `Database.write()` at the start of its unit of work,
- and inside the units of plain creates, updates, patches and deletes (which do neither) searches
  (`search.find_ids`, a search given a connection) and the replacement or removal of a resource's
  rows call `bring_current` on the writer's connection.
The background checkpointer moves pending rows every round (checkpoint.py), so readers rarely find
more than a fraction of a second of creates to move. PostgreSQL writes every row to the index tables
directly: nothing is ever pending there.
"""
from __future__ import annotations

from sqlalchemy.engine import Connection

from ipt_fhir.fhir.jsonio import dump_json

from .search_tables import INDEX_TABLES, pending_index_table

# Marks the writer's connection (Database._transaction): only a connection inside a write transaction
# can move rows; a read connection was brought current before its snapshot began.
WRITER = "ipt_fhir.sqlite_writer"

_P = pending_index_table.name
_KINDS = tuple(INDEX_TABLES)
INSERT_SQL = f"INSERT INTO {_P} (resource_type, resource_id, {', '.join(_KINDS)}) VALUES (?, ?{', ?' * len(_KINDS)})"
ANY_PENDING_SQL = f"SELECT 1 FROM {_P} LIMIT 1"


def _move_sql() -> list[str]:
    """One INSERT ... SELECT per index table, expanding the pending resources' rows of that table (a
    JSON array of arrays in the table's column order after resource_type and resource_id), up to the
    pending row `:last`; then their removal. Each JSON value is parsed once."""
    out = []
    for kind, table in INDEX_TABLES.items():
        columns = [c.name for c in table.columns]
        values = [f"json_extract(j.value, '$[{i}]')" for i in range(len(columns) - 2)]
        out.append(f"INSERT INTO {table.name} ({', '.join(columns)}) "
                   f"SELECT p.resource_type, p.resource_id, {', '.join(values)} "
                   f"FROM {_P} p, json_each(p.{kind}) j WHERE p.{kind} IS NOT NULL AND p.rowid <= :last")
    return out + [f"DELETE FROM {_P} WHERE rowid <= :last"]


_MOVE_SQL = _move_sql()
_LAST_SQL = f"SELECT max(rowid) FROM {_P}"
_NTH_SQL = f"SELECT rowid FROM {_P} ORDER BY rowid LIMIT 1 OFFSET ?"


def append(conn: Connection, resource_type: str, resource_id: str, rows: dict[str, list[tuple]]) -> None:
    """Hold back the index rows (indexer.index_rows) of a resource created in this unit of work."""
    params = [resource_type, resource_id]
    for kind in _KINDS:
        kind_rows = rows.get(kind)
        params.append(dump_json(list(dict.fromkeys(kind_rows))).decode() if kind_rows else None)
    conn.connection.driver_connection.execute(INSERT_SQL, params)


def pending(driver_connection) -> bool:  # noqa: ANN001 - a sqlite3.Connection
    return driver_connection.execute(ANY_PENDING_SQL).fetchone() is not None


def move(driver_connection, limit: int | None = None) -> bool:  # noqa: ANN001 - sqlite3, in a write transaction
    """Move the rows of every pending resource, or of the `limit` oldest ones, into the index tables;
    False when nothing was pending."""
    cur = driver_connection.cursor()
    try:
        last = None
        if limit is not None:
            last = cur.execute(_NTH_SQL, (limit - 1,)).fetchone()
        if last is None:
            last = cur.execute(_LAST_SQL).fetchone()
        if last is None or last[0] is None:
            return False
        for sql in _MOVE_SQL:
            cur.execute(sql, {"last": last[0]})
        return True
    finally:
        cur.close()


def bring_current(conn: Connection) -> None:
    """Make the index complete for what `conn` reads next. On the SQLite writer's connection this moves
    pending rows inside the caller's unit of work; elsewhere there is nothing to do (PostgreSQL, or a
    read connection: Database.read() moved them before the snapshot)."""
    if conn.info.get(WRITER):
        move(conn.connection.driver_connection)
