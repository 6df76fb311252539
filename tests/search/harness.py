"""Direct engine harness: a database with resources inserted and indexed without the REST layer."""
from __future__ import annotations

import itertools
from datetime import datetime, timezone

from ipt_fhir.fhir.jsonio import dump_json
from ipt_fhir.store import all_tables  # noqa: F401
from ipt_fhir.store.database import Database
from ipt_fhir.store.search_index import delete_index, write_index
from ipt_fhir.store.tables import metadata, resource_table

_ids = itertools.count(1)


def make_db(url: str) -> Database:
    db = Database(url)
    metadata.drop_all(db.engine)
    metadata.create_all(db.engine)
    return db


def put(db: Database, resource: dict, last_updated: datetime | None = None) -> dict:
    rt = resource["resourceType"]
    rid = resource.setdefault("id", f"r{next(_ids)}")
    lu = last_updated or datetime.now(timezone.utc)
    resource.setdefault("meta", {})["lastUpdated"] = lu.isoformat().replace("+00:00", "Z")
    with db.write() as conn:
        conn.execute(resource_table.delete().where(resource_table.c.resource_type == rt, resource_table.c.id == rid))
        conn.execute(resource_table.insert(), [{
            "resource_type": rt, "id": rid, "version_id": 1, "last_updated": lu, "deleted": False,
            "content": dump_json(resource)}])
        write_index(conn, rt, rid, resource)
    return resource


def remove(db: Database, rt: str, rid: str) -> None:
    with db.write() as conn:
        conn.execute(resource_table.update().where(resource_table.c.resource_type == rt, resource_table.c.id == rid)
                     .values(deleted=True, content=None))
        delete_index(conn, rt, rid)


def result_keys(bundle: dict) -> list[tuple[str, str]]:
    """(type, id) of a search Bundle's entries in order, without its OperationOutcome (search mode outcome)."""
    return [(e["resource"]["resourceType"], e["resource"]["id"]) for e in bundle.get("entry", [])
            if e["search"]["mode"] != "outcome"]
