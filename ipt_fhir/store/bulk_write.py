"""Appending many rows at once ($import batches, a transaction's plain creates): current versions,
history and search index rows.

PostgreSQL gets one binary COPY per table: with ~15 index rows per resource, per-row INSERTs (even
pipelined executemany) cost more client and server time than the rows themselves, and COPY sends only
the values. SQLite has no COPY; a plain executemany on the driver cursor is its fastest form. Both run
on the connection of the caller's unit of work, so they commit or roll back with the rest of the batch.
Rows are written exactly as given: the caller has checked that the ids are new (a concurrent writer
that got there first makes the COPY fail with an IntegrityError, as an INSERT would).
"""
from __future__ import annotations

from typing import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .database import sqlite_datetime
from .resources import StoredVersion
from .search_tables import INDEX_INSERT_SQL, INDEX_TABLES
from .tables import history_table, pg_type, resource_table

_RESOURCE_COLUMNS = ("resource_type", "id", "version_id", "last_updated", "deleted", "content")
_HISTORY_COLUMNS = ("resource_type", "id", "version_id", "last_updated", "method", "content")
_INDEX_COLUMNS = {kind: tuple(c.name for c in table.columns) for kind, table in INDEX_TABLES.items()}


def _copy_sql(table: sa.Table, columns: tuple[str, ...]) -> tuple[str, list[str]]:
    return (f"COPY {table.name} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)",
            [pg_type(table.c[name]) for name in columns])


_PG_COPY = {
    "resource": _copy_sql(resource_table, _RESOURCE_COLUMNS),
    "history": _copy_sql(history_table, _HISTORY_COLUMNS),
    **{kind: _copy_sql(INDEX_TABLES[kind], cols) for kind, cols in _INDEX_COLUMNS.items()},
}
# Columns a float8 COPY must get as floats (extracted numbers may be ints).
_FLOAT_COLUMNS = {kind: [i for i, t in enumerate(_PG_COPY[kind][1]) if t == "float8"] for kind in _INDEX_COLUMNS}


def _insert_sql(table: sa.Table, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


_SQLITE_INSERT = {
    "resource": _insert_sql(resource_table, _RESOURCE_COLUMNS),
    "history": _insert_sql(history_table, _HISTORY_COLUMNS),
    **INDEX_INSERT_SQL["sqlite"],  # every column in table order, as _INDEX_COLUMNS
}


def _write(conn: Connection, what: str, rows: Iterable[tuple]) -> None:
    raw = conn.connection.dbapi_connection
    if conn.dialect.name == "postgresql":
        sql, types = _PG_COPY[what]
        with raw.cursor() as cur, cur.copy(sql) as copy:
            copy.set_types(types)
            for row in rows:
                copy.write_row(row)
        return
    cur = raw.cursor()
    try:
        cur.executemany(_SQLITE_INSERT[what], rows)
    finally:
        cur.close()


def _when(conn: Connection, v: StoredVersion) -> object:
    return v.last_updated if conn.dialect.name == "postgresql" else sqlite_datetime(v.last_updated)


def insert_current(conn: Connection, versions: list[StoredVersion]) -> None:
    """The current rows of resources that did not exist."""
    if versions:
        _write(conn, "resource", [(v.resource_type, v.id, v.version_id, _when(conn, v), v.deleted, v.content)
                                  for v in versions])


def insert_history(conn: Connection, versions: list[StoredVersion], method: str) -> None:
    """History rows; `seq` comes from the table's sequence, in the order given."""
    if versions:
        _write(conn, "history", [(v.resource_type, v.id, v.version_id, _when(conn, v), method, v.content)
                                 for v in versions])


def insert_index_rows(conn: Connection, rows_by_kind: dict[str, list[tuple]]) -> None:
    """Full index rows (resource_type, resource_id, param, *values) per table kind."""
    for kind, rows in rows_by_kind.items():
        if not rows:
            continue
        floats = _FLOAT_COLUMNS[kind]
        if floats and conn.dialect.name == "postgresql":
            rows = [_with_floats(r, floats) for r in rows]
        _write(conn, kind, rows)


def _with_floats(row: tuple, floats: list[int]) -> tuple:
    out = list(row)
    for i in floats:
        if out[i] is not None:
            out[i] = float(out[i])
    return tuple(out)
