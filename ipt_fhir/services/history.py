"""The history interaction at instance, type and system level (http://hl7.org/fhir/R4/http.html#history).

Entries come newest first. Pages are offsets into a snapshot: the first page fixes the newest history
row it can see, and every link carries it, so writes made while a client pages never shift the pages.
"""
from __future__ import annotations

from datetime import datetime
from urllib.parse import urlencode

from ipt_fhir.fhir.dates import parse_fhir_datetime_range
from ipt_fhir.fhir.outcome import bad_request, not_found
from ipt_fhir.security import audit, guard
from ipt_fhir.services.bundles import splice_bundle
from ipt_fhir.fhir.resource_types import require_rest_type
from ipt_fhir.services.resources import format_instant
from ipt_fhir.settings import Settings
from ipt_fhir.store import resources as repo
from ipt_fhir.store.database import Database
from ipt_fhir.store.resources import HistoryEntry

_STATUS = {"PUT": "200 OK", "PATCH": "200 OK", "DELETE": "204 No Content"}  # when not creating
_PARAMS = {"_count", "_since", "_at", "_snapshot", "_offset", "_format", "_pretty", "_summary"}


class HistoryService:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    def history(self, params: list[tuple[str, str]], *, base_url: str, resource_type: str | None = None,
                resource_id: str | None = None) -> bytes:
        if resource_type:
            require_rest_type(resource_type)
            guard.require("history-instance" if resource_id else "history-type", resource_type)
        q = dict(params)
        count = _int_param(q, "_count", self.settings.default_page_size, minimum=0)
        count = min(count, self.settings.max_page_size)
        if q.get("_summary") == "count":  # the total only, as for a search
            count = 0
        offset = _int_param(q, "_offset", 0, minimum=0)
        since = _instant_param(q, "_since")
        at = None
        if "_at" in q:
            try:
                at = parse_fhir_datetime_range(q["_at"])
            except ValueError as exc:
                raise bad_request(f"_at: {exc}", "_at", code="value")
        with self.db.read() as conn:
            current = repo.current(conn, resource_type, resource_id) if resource_id else None
            if resource_id and current is None:
                raise not_found(f"{resource_type}/{resource_id} is not known")
            if current is not None and not current.deleted:
                guard.check_resource("history-instance", resource_type, current.content)
            snapshot = _int_param(q, "_snapshot", 0, minimum=0) or repo.max_history_seq(conn)

            def page(start: int, limit: int) -> tuple[list[HistoryEntry], int]:
                return repo.history_page(conn, resource_type=resource_type, resource_id=resource_id, since=since,
                                         at=at, max_seq=snapshot, offset=start, limit=limit)

            # Entries this token may not see are left out; at type and system level the total (optional in
            # a history Bundle) would count them, so a restricted token gets none.
            counted = not guard.is_restricted() or resource_id is not None
            if guard.is_restricted():
                entries, total, next_offset = _visible_page(page, offset, count)
            else:
                entries, total = page(offset, count)
                next_offset = offset + count
            audit.note_search(None, urlencode(params), audit.patients_in(
                conn, list(dict.fromkeys((e.resource_type, e.id) for e in entries))))
        path = "/".join(p for p in (base_url, resource_type, resource_id, "_history") if p)
        kept = [(k, v) for k, v in params if k in _PARAMS and k not in ("_snapshot", "_offset")]

        def link(relation: str, page_offset: int) -> dict:
            query = kept + [("_snapshot", str(snapshot)), ("_offset", str(page_offset))]
            return {"relation": relation, "url": f"{path}?{urlencode(query)}"}

        links = [link("self", offset), link("first", 0)]
        if offset > 0 and count and counted:  # a restricted page's start depends on what the ones before hid
            links.append(link("previous", max(0, offset - count)))
        if count and next_offset < total:
            links.append(link("next", next_offset))
        if count and counted:
            links.append(link("last", max(0, (total - 1) // count * count)))
        head = {"resourceType": "Bundle", "type": "history", **({"total": total} if counted else {}), "link": links}
        return splice_bundle(head, [history_entry(e, base_url) for e in entries])


# A restricted token's page reads on past the entries it may not see, up to this many pages' worth of rows
# a request: a patient's history among many others' still ends in bounded time, its next link going on.
HIDDEN_PAGES_READ = 10


def _visible_page(page, offset: int, count: int) -> tuple[list[HistoryEntry], int, int]:  # noqa: ANN001
    """(up to `count` entries the token may see, from history position `offset` on; the total of all
    entries; the position after the last one read). Filtering one stored page left pages empty or short
    with a next link, when a patient's entries were few among everyone's."""
    if not count:
        return [], page(offset, 0)[1], offset
    out: list[HistoryEntry] = []
    position = offset
    while True:
        entries, total = page(position, count)
        for e in entries:
            position += 1
            if guard.visible_history(e.resource_type, e.content):
                out.append(e)
                if len(out) == count:
                    return out, total, position
        if not entries or position >= total or position - offset >= HIDDEN_PAGES_READ * count:
            return out, total, position


def history_entry(e: HistoryEntry, base_url: str) -> tuple[dict, bytes | None]:
    """A history Bundle's entry for version `e`, and the content that goes into its `resource`."""
    url = f"{e.resource_type}/{e.id}"
    entry = {
        "fullUrl": f"{base_url}/{url}",
        "request": {"method": "PATCH" if e.method == "PATCH" else e.method,
                    "url": e.resource_type if e.method == "POST" else url},
        # The outcome of the interaction that wrote this version (bundle.html#history): an update that
        # created the resource (new id, or after a delete) answered 201, as a create did.
        "response": {"status": "201 Created" if e.created else _STATUS[e.method], "etag": f'W/"{e.version_id}"',
                     "lastModified": format_instant(e.last_updated)},
    }
    return entry, e.content


def _int_param(q: dict[str, str], name: str, default: int, *, minimum: int) -> int:
    if name not in q:
        return default
    value = q[name].strip()
    if not (value.isascii() and value.isdigit()) or len(value) > 18 or int(value) < minimum:
        raise bad_request(f"{name} must be a non-negative integer, not '{q[name]}'", name, code="value")
    return int(value)


def _instant_param(q: dict[str, str], name: str) -> datetime | None:
    if name not in q:
        return None
    try:
        return parse_fhir_datetime_range(q[name])[0]
    except ValueError as exc:
        raise bad_request(f"{name}: {exc}", name, code="value")
