"""SQLite: the search index rows of newly created resources, held back and moved into the index in batches.

Why: a create's ~15 index rows, inserted one resource at a time into the value-indexed tables, dirty
about 36 B-tree pages, each written to the WAL by that commit: a third of a create's cost. A resource's
first version therefore appends its rows to index-less twins of the tables (`search_*_pending`, one
page or two per commit), and they move into the indexed tables many resources at a time, where rows
share pages and the B-tree work runs inside SQLite (a quarter of the cost per row).

The index stays exact for everything that reads it: each reader first moves whatever is pending,
- `Database.read()` before it opens its snapshot,
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

from .search_tables import INDEX_TABLES, PENDING_TABLES

# Marks the writer's connection (Database._transaction): only a connection inside a write transaction
# can move rows; a read connection was brought current before its snapshot began.
WRITER = "ipt_fhir.sqlite_writer"

INSERT_SQL: dict[str, str] = {
    kind: f"INSERT INTO {t.name} VALUES ({', '.join('?' * len(t.columns))})" for kind, t in PENDING_TABLES.items()}

ANY_PENDING_SQL = " UNION ALL ".join(f"SELECT 1 FROM {t.name}" for t in PENDING_TABLES.values()) + " LIMIT 1"

_MOVE_SQL: list[str] = []
for _kind, _table in INDEX_TABLES.items():
    _cols = ", ".join(c.name for c in _table.columns)
    _pending = PENDING_TABLES[_kind].name
    _MOVE_SQL += [f"INSERT INTO {_table.name} ({_cols}) SELECT {_cols} FROM {_pending}", f"DELETE FROM {_pending}"]


def append(conn: Connection, rows: dict[str, list[tuple]]) -> None:
    """Hold back full table rows (search_index.full_rows) of resources created in this unit of work."""
    cur = conn.connection.driver_connection.cursor()
    try:
        for kind, payload in rows.items():
            cur.executemany(INSERT_SQL[kind], payload)
    finally:
        cur.close()


def move(driver_connection) -> bool:  # noqa: ANN001 - a sqlite3.Connection inside a write transaction
    """Move every pending row into the index tables; False when there was none."""
    cur = driver_connection.cursor()
    try:
        if cur.execute(ANY_PENDING_SQL).fetchone() is None:
            return False
        for sql in _MOVE_SQL:
            cur.execute(sql)
        return True
    finally:
        cur.close()


def bring_current(conn: Connection) -> None:
    """Make the index complete for what `conn` reads next. On the SQLite writer's connection this moves
    pending rows inside the caller's unit of work; elsewhere there is nothing to do (PostgreSQL, or a
    read connection: Database.read() moved them before the snapshot)."""
    if conn.info.get(WRITER):
        move(conn.connection.driver_connection)
