"""Storing the server's IPT conformance resources, so that they are resources like any other.

The profiles, code systems, value sets, protocols and operation definitions come with the code (and
with IPT_FHIR_CANONICAL_BASE). At every start each is written to the store if it is missing, or as a
new version if the code's differs from the stored one (a release, another canonical base); otherwise
nothing is written. Search, _include, chains, _sort, paging, history, batch entries and $export then
treat them exactly as stored resources, with one engine. Clients still cannot change them: their ids
and canonical URLs are refused to every write (hook._check_conformance_write).

Several workers may start at once: one whose write loses to another's (the same id created, or the
version moved) runs again and finds the winner's (publish).
"""
from __future__ import annotations

import logging

from sqlalchemy.engine import Connection

from ipt_fhir.fhir.jsonio import dump_json, load_stored
from ipt_fhir.services.resources import now_utc, same_content, with_server_meta
from ipt_fhir.store import resources as repo
from ipt_fhir.store.database import Database
from ipt_fhir.store.resources import StoredVersion
from ipt_fhir.store.search_index import write_index

from .conformance import ConformanceRegistry

log = logging.getLogger(__name__)

ATTEMPTS = 5  # units of work one start tries: each lost race leaves less to write


class _Lost(Exception):
    """Another worker wrote one of them first: this unit of work is void (PostgreSQL aborted it)."""


def publish(db: Database, registry: ConformanceRegistry) -> int:
    """Bring the stored copies of the registry's resources up to date; the number written. A unit of
    work that loses a race to another worker is rolled back and run again: it then finds that worker's
    writes and writes only what is still missing."""
    for _attempt in range(ATTEMPTS):
        try:
            with db.write() as conn:
                written = sum(_publish_one(conn, resource_type, resource_id, resource)
                              for (resource_type, resource_id), resource in sorted(registry.resources.items()))
        except _Lost:
            continue
        if written:
            log.info("stored the server's IPT conformance resources", extra={"written": written})
        return written
    raise RuntimeError(f"the IPT conformance resources could not be stored in {ATTEMPTS} attempts")


def _publish_one(conn: Connection, resource_type: str, resource_id: str, resource: dict) -> int:
    current = repo.current(conn, resource_type, resource_id)
    if current is not None and not current.deleted and same_content(load_stored(current.content), resource):
        return 0
    version_id = 1 if current is None else current.version_id + 1
    last_updated = now_utc()
    doc = with_server_meta(resource, resource_id, version_id, last_updated)
    stored = StoredVersion(resource_type, resource_id, version_id, last_updated, False, dump_json(doc))
    written = repo.insert_new(conn, stored, "POST") if current is None else \
        repo.replace(conn, stored, current.version_id, "PUT")
    if not written:
        raise _Lost()
    write_index(conn, resource_type, resource_id, doc)
    return 1
