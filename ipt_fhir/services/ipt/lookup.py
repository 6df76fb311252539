"""ResourceLookup (ipt_fhir.domain.lookup) over the Connection of the current unit of work.

Reads go through the caller's Connection, so inside a transaction they see the transaction's own
earlier writes (and, with deferred checks, all of its writes).
"""
from __future__ import annotations

from collections.abc import Container

from sqlalchemy.engine import Connection

from ipt_fhir.fhir.jsonio import load_stored
from ipt_fhir.services.search import find_ids
from ipt_fhir.store import resources as repo


class StoreLookup:
    def __init__(self, conn: Connection, base_url: str = "", written_after: Container[str] = frozenset()) -> None:
        self.conn = conn
        self.base_url = base_url
        self._cache: dict[tuple[str, str], dict | None] = {}
        self.written_after = written_after  # see write_hooks.Change.written_after

    def read(self, type: str, id: str) -> dict | None:  # noqa: A002
        key = (type, id)
        if key not in self._cache:
            stored = repo.current(self.conn, type, id)
            self._cache[key] = None if stored is None or stored.deleted else load_stored(stored.content)
        return self._cache[key]

    def search(self, type: str, params: list[tuple[str, str]]) -> list[dict]:  # noqa: A002
        ids = find_ids(self.conn, type, params, self.base_url)
        out = []
        for stored in repo.current_many(self.conn, type, ids):
            if not stored.deleted and stored.content is not None:
                resource = load_stored(stored.content)
                self._cache[(type, stored.id)] = resource
                out.append(resource)
        return sorted(out, key=lambda r: r["id"])
