"""Writing the search index: called inside the unit of work of every create/update/patch/delete."""
from __future__ import annotations

from functools import lru_cache
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ipt_fhir.fhir.jsonio import load_stored
from ipt_fhir.fhir.search.indexer import index_rows

from . import pending_index
from .database import Database
from .search_tables import INDEX_DELETE_SQL, INDEX_INSERT_SQL, INDEX_TABLES
from .tables import pg_type, resource_table


# The index is written on every create/update, so it bypasses SQLAlchemy's per-statement machinery
# and uses the DBAPI cursor of the same connection (same transaction) with precomputed SQL.
def _cursor(conn: Connection):  # noqa: ANN202
    return conn.connection.dbapi_connection.cursor()


def full_rows(resource_type: str, resource_id: str, rows: dict[str, list[tuple]]) -> dict[str, list[tuple]]:
    """index_rows' rows as table rows (resource_type, resource_id, param, *values), per table kind with
    rows; a resource's duplicate rows once."""
    return {kind: list(dict.fromkeys((resource_type, resource_id, *r) for r in kind_rows))
            for kind, kind_rows in rows.items() if kind_rows}


def table_rows(resource_type: str, resource_id: str, doc: dict) -> dict[str, list[tuple]]:
    """The index table rows of a stored document, for writers that append many at once (bulk_write)."""
    return full_rows(resource_type, resource_id, index_rows(resource_type, doc))


def _insert(conn: Connection, resource_type: str, resource_id: str, rows: dict[str, list[tuple]]) -> None:
    inserts = INDEX_INSERT_SQL[conn.dialect.name]
    cur = _cursor(conn)
    try:
        for kind, payload in full_rows(resource_type, resource_id, rows).items():
            cur.executemany(inserts[kind], payload)
    finally:
        cur.close()


def delete_index(conn: Connection, resource_type: str, resource_id: str) -> None:
    pending_index.forget(conn, resource_type, resource_id)  # its rows, if pending, are the caller's now
    deletes = INDEX_DELETE_SQL[conn.dialect.name]
    cur = _cursor(conn)
    try:
        for sql in deletes.values():
            cur.execute(sql, (resource_type, resource_id))
    finally:
        cur.close()


def _pg_unnest_sql() -> dict[str, tuple[str, list[bool]]]:
    """Per table: one INSERT of all a resource's rows as column arrays (unnest), and which columns are floats."""
    out = {}
    for kind, table in INDEX_TABLES.items():
        cols = [c for c in table.columns if c.name not in ("resource_type", "resource_id")]
        arrays = ", ".join(f"%s::{pg_type(c)}[]" for c in cols)
        out[kind] = (f"INSERT INTO {table.name} (resource_type, resource_id, {', '.join(c.name for c in cols)}) "
                     f"SELECT %s, %s, u.* FROM unnest({arrays}) AS u",
                     [pg_type(c) == "float8" for c in cols])
    return out


_PG_UNNEST = _pg_unnest_sql()


def _pg_write(conn: Connection, resource_type: str, resource_id: str, rows: dict[str, list[tuple]],
              delete: bool) -> None:
    """PostgreSQL: deletes and inserts go out in one psycopg pipeline (one network round trip), with
    fixed, server-side prepared statements; each table's rows go as one INSERT ... SELECT FROM unnest(
    column arrays), so the statement count does not grow with the row count."""
    deletes = INDEX_DELETE_SQL["postgresql"]
    kinds = tuple(kind for kind, kind_rows in rows.items() if kind_rows)
    params: list = []
    for kind in kinds:
        floats = _PG_UNNEST[kind][1]
        columns = [list(c) for c in zip(*dict.fromkeys(rows[kind]))]
        for i, is_float in enumerate(floats):
            if is_float:
                columns[i] = [None if v is None else float(v) for v in columns[i]]
        params += [resource_type, resource_id, *columns]
    raw = conn.connection.dbapi_connection
    with raw.pipeline(), raw.cursor() as cur:
        if delete:
            for sql in deletes.values():
                cur.execute(sql, (resource_type, resource_id), prepare=True)
        if kinds:
            cur.execute(_pg_insert_sql(kinds), params, prepare=True)


@lru_cache(maxsize=512)
def _pg_insert_sql(kinds: tuple[str, ...]) -> str:
    """One statement inserting into every table that has rows: data-modifying CTEs, one per table."""
    parts = [_PG_UNNEST[k][0] for k in kinds]
    if len(parts) == 1:
        return parts[0]
    ctes = ", ".join(f"w{i} AS ({sql})" for i, sql in enumerate(parts[:-1]))
    return f"WITH {ctes} {parts[-1]}"


def write_index(conn: Connection, resource_type: str, resource_id: str, resource: dict) -> None:
    """Index the version of one resource just written: its first version's rows are new (ids are never
    reused across deletes: versions continue); a later one replaces the rows of the one before."""
    if (resource.get("meta") or {}).get("versionId") != "1":
        replace_index(conn, resource_type, resource_id, resource)
        return
    if conn.dialect.name == "postgresql":
        _pg_write(conn, resource_type, resource_id, index_rows(resource_type, resource), False)
    else:  # a new resource: indexed later, with others (pending_index.py)
        pending_index.append(conn, resource_type, resource_id)


def replace_index(conn: Connection, resource_type: str, resource_id: str, resource: dict) -> None:
    """Replace every index row of one resource with those of `resource`, whatever its version."""
    rows = index_rows(resource_type, resource)
    if conn.dialect.name == "postgresql":
        _pg_write(conn, resource_type, resource_id, rows, True)
        return
    delete_index(conn, resource_type, resource_id)
    _insert(conn, resource_type, resource_id, rows)


def reindex_all(db: Database, progress: Callable[[int], None] | None = None, batch: int = 500) -> int:
    """Rebuild every index row from the stored resources (after a definitions change). Returns the count."""
    with db.write() as conn:
        for table in INDEX_TABLES.values():
            conn.execute(table.delete())
    done = 0
    r = resource_table
    last = ("", "")
    while True:
        with db.read() as conn:
            page = conn.execute(
                sa.select(r.c.resource_type, r.c.id, r.c.content)
                .where(r.c.deleted.is_(False), sa.tuple_(r.c.resource_type, r.c.id) > sa.tuple_(*last))
                .order_by(r.c.resource_type, r.c.id).limit(batch)
            ).all()
        if not page:
            break
        with db.write() as conn:
            for rt, rid, content in page:
                if content is None:
                    continue
                _insert(conn, rt, rid, index_rows(rt, load_stored(content)))
                done += 1
        last = (page[-1][0], page[-1][1])
        if progress:
            progress(done)
    return done
