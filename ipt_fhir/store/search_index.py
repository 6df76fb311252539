"""Writing the search index: called inside the unit of work of every create/update/patch/delete."""
from __future__ import annotations

from datetime import datetime
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ipt_fhir.fhir.jsonio import load_stored
from ipt_fhir.fhir.search.indexer import index_rows

from .database import Database
from .search_tables import INDEX_TABLES
from .tables import resource_table

_COLUMNS = {kind: [c.name for c in table.columns][2:] for kind, table in INDEX_TABLES.items()}
_INSERTS = {kind: table.insert() for kind, table in INDEX_TABLES.items()}
_DELETES = {
    kind: table.delete().where(table.c.resource_type == sa.bindparam("rt"), table.c.resource_id == sa.bindparam("rid"))
    for kind, table in INDEX_TABLES.items()
}


def _insert(conn: Connection, resource_type: str, resource_id: str, rows: dict[str, list[tuple]]) -> None:
    for kind, kind_rows in rows.items():
        if not kind_rows:
            continue
        cols = _COLUMNS[kind]
        seen = set()
        payload = []
        for r in kind_rows:
            if r in seen:
                continue
            seen.add(r)
            d = dict(zip(cols, r))
            d["resource_type"] = resource_type
            d["resource_id"] = resource_id
            payload.append(d)
        conn.execute(_INSERTS[kind], payload)


def delete_index(conn: Connection, resource_type: str, resource_id: str) -> None:
    for stmt in _DELETES.values():
        conn.execute(stmt, {"rt": resource_type, "rid": resource_id})


def write_index(conn: Connection, resource_type: str, resource_id: str, resource: dict,
                last_updated: datetime) -> None:
    """Replace every index row of one resource."""
    rows = index_rows(resource_type, resource, last_updated)
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
                sa.select(r.c.resource_type, r.c.id, r.c.last_updated, r.c.content)
                .where(r.c.deleted.is_(False), sa.tuple_(r.c.resource_type, r.c.id) > sa.tuple_(*last))
                .order_by(r.c.resource_type, r.c.id).limit(batch)
            ).all()
        if not page:
            break
        with db.write() as conn:
            for rt, rid, lu, content in page:
                if content is None:
                    continue
                _insert(conn, rt, rid, index_rows(rt, load_stored(content), lu))
                done += 1
        last = (page[-1][0], page[-1][1])
        if progress:
            progress(done)
    return done
