"""The RESTful interactions on resources (http://hl7.org/fhir/R4/http.html), HTTP-free.

Routes parse the request, call one method here and turn the result into a response. Each write is one
unit of work: validation, business rules, the resource row, its history row, its search index and the
read models of the write hooks commit together or not at all.
"""
from __future__ import annotations

import hashlib
import re
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Callable, Iterator, TypeVar
from urllib.parse import parse_qsl

from sqlalchemy.engine import Connection

from ipt_fhir.fhir.jsonio import dump_json, load_stored
from ipt_fhir.fhir.outcome import (
    FHIRError, Issue, bad_request, conflict, error, gone, multiple_matches, not_found, precondition_failed,
)
from ipt_fhir.fhir.patch import apply_patch
from ipt_fhir.fhir.resource_types import require_rest_type
from ipt_fhir.security import audit, guard
from ipt_fhir.services import write_hooks
from ipt_fhir.services.search import find_ids
from ipt_fhir.services.validation import validate_for_write
from ipt_fhir.store import resources as repo
from ipt_fhir.store.database import Database
from ipt_fhir.store.ids import new_resource_id
from ipt_fhir.store.resources import StoredVersion
from ipt_fhir.store.search_index import delete_index, write_index

SERVER_OWNED_META = ("versionId", "lastUpdated", "_versionId", "_lastUpdated")


@dataclass
class WriteResult:
    status: int  # 200 OK, 201 Created
    version: StoredVersion
    issues: list[Issue] = field(default_factory=list)


class StoreStep:
    """The storing step of a checked create or update: one unit of work. Calling it runs the unit; the
    REST layer may instead hand `unit` to the event loop's shared commits (store/loop_commit.py)."""

    __slots__ = ("db", "unit")

    def __init__(self, db: Database, unit: Callable[[Connection], WriteResult]) -> None:
        self.db = db
        self.unit = unit

    def __call__(self) -> WriteResult:
        # PUTs racing to create one new id (PostgreSQL: side by side): the losers' units rolled back whole,
        # and run again they find the winner's version and update it, as when the resource existed.
        return run_settled(lambda: self.db.run_write(self.unit), CreatedConcurrently)


@dataclass
class DeleteResult:
    deleted: int  # how many resources this request deleted
    issues: list[Issue] = field(default_factory=list)


def without_client_id(resource: dict) -> dict:
    """A create's resource without the id its body may carry: "If an id is provided, the server SHALL
    ignore it" (http.html#create), even one that is no valid id; the server assigns its own.

    In JSON one element is two properties: `id` holds its value and `_id` its own id and extensions
    (json.html#primitive). Ignoring the id element ignores both: extensions on Resource.id describe the
    client's id, not the one the server assigns, and would make a false statement about it. An update
    (the client's id is kept) keeps `_id` as sent (with_server_meta)."""
    if "id" not in resource and "_id" not in resource:
        return resource
    return {k: v for k, v in resource.items() if k != "id" and k != "_id"}


def parse_criteria(query: str | list[tuple[str, str]], resource_type: str | None = None) -> list[tuple[str, str]]:
    """Search criteria as (name, value) pairs. A string may also take the form of a search URL relative to
    the base, `[type]?criteria` (as some clients send If-None-Exist); the type must then be `resource_type`."""
    if isinstance(query, str):
        head, question, rest = query.partition("?")
        if question and "=" not in head and "&" not in head:
            if resource_type is not None and head not in ("", resource_type):
                raise bad_request(f"The criteria '{query}' search {head}, not {resource_type}")
            query = rest
    params = parse_qsl(query, keep_blank_values=True) if isinstance(query, str) else list(query)
    params = [(k, v) for k, v in params if k not in ("_format", "_pretty")]
    if not params:
        raise bad_request("Conditional criteria are empty")
    return params


def now_utc() -> datetime:
    # FHIR instants are served with millisecond precision; store exactly what is served.
    t = datetime.now(timezone.utc)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


@lru_cache(maxsize=64)  # an import chunk or a transaction stamps many versions with one instant
def format_instant(t: datetime) -> str:
    """An instant as FHIR serves it: UTC, milliseconds, '+00:00' (2026-01-05T10:00:00.000+00:00)."""
    return t.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def with_server_meta(resource: dict, resource_id: str, version_id: int, last_updated: datetime) -> dict:
    """The resource as stored: client content untouched (`_id`, the extensions on Resource.id, too: an
    update's id is the client's own; a create's `_id` went with its id, see without_client_id), id and
    meta.versionId/lastUpdated ours."""
    meta = {k: v for k, v in (resource.get("meta") or {}).items() if k not in SERVER_OWNED_META}
    meta["versionId"] = str(version_id)
    meta["lastUpdated"] = format_instant(last_updated)
    out = {"resourceType": resource["resourceType"], "id": resource_id, "meta": meta}
    for key, value in resource.items():
        if key not in ("resourceType", "id", "meta"):
            out[key] = value
    return out


def same_content(stored: dict, incoming: dict) -> bool:
    """Whether two versions of a resource say the same, server-owned meta (versionId, lastUpdated) apart:
    writing `incoming` over `stored` would change nothing (an import's unchanged line, a start-up that
    finds the server's own resources as its code has them)."""
    return _without_server_meta(stored) == _without_server_meta(incoming)


def _without_server_meta(resource: dict) -> dict:
    meta = resource.get("meta")
    out = {k: v for k, v in resource.items() if k != "meta"}
    if isinstance(meta, dict):
        rest = {k: v for k, v in meta.items() if k not in SERVER_OWNED_META}
        if rest:
            out["meta"] = rest
    return out


Versions = frozenset[int]  # the versions a list of ETags names (If-Match, If-None-Match)
ANY_VERSION = -2  # If-Match: *
NO_VERSION = -1  # an ETag naming no version this server writes (W/"0", W/"01"): its precondition never holds


def version_number(version_id: str) -> int | None:
    """The version a vread's version id names, or None when it names none this server wrote. Version ids
    are strings: "01" is not "1". At most 18 digits, so the number fits the SQL column."""
    if version_id.isascii() and version_id.isdigit() and len(version_id) <= 18 and version_id[0] != "0":
        return int(version_id)
    return None


def etag_versions(value: str | None, header: str = "If-None-Match") -> frozenset[int] | None:
    """The versions a list of ETags names (If-None-Match or If-Match: W/"2", W/"3"; RFC 9110 13.1.1 and
    13.1.2 both take a list); `*` is ANY_VERSION. Each ETag as etag_version reads it; empty list elements
    are ignored (RFC 9110 5.6.1.2), a list of none is malformed."""
    if value is None:
        return None
    tags = [tag for tag in value.split(",") if tag.strip()]
    if not tags:
        return frozenset({etag_version(value, header)})  # raises: names no ETag
    return frozenset(etag_version(tag, header) for tag in tags)


def if_match_versions(value: str | None) -> frozenset[int] | None:
    """The versions an If-Match header (or a Bundle entry's request.ifMatch) names: see etag_versions."""
    return etag_versions(value, "If-Match")


def etag_version(value: str | None, header: str = "If-Match") -> int | None:
    """The version an If-Match header asks for: W/"3", "3" or 3; `*` (any current version, RFC 9110
    13.1.1) is ANY_VERSION. Any other entity-tag (W/"abc") names no version this server writes: NO_VERSION,
    so If-Match fails with a 412 and If-None-Match holds, as for any ETag that matches nothing. Only what
    is no entity-tag at all is a malformed header: 400."""
    if value is None:
        return None
    tag = value.strip()
    if tag == "*":
        return ANY_VERSION
    if tag.startswith("W/"):
        tag = tag[2:]
    quoted = _OPAQUE_TAG.fullmatch(tag) is not None
    tag = tag.strip('"')
    if tag.isascii() and tag.isdigit():
        # ETags compare as opaque strings (RFC 9110 8.8.3.2), as version ids do: W/"01" is not W/"1"
        number = version_number(tag)
        return NO_VERSION if number is None else number
    if quoted:
        return NO_VERSION
    raise FHIRError.of(400, "invalid", f"{header} must be an ETag such as W/\"3\", or *; got '{value}'")


# RFC 9110 8.8.3: opaque-tag = DQUOTE *etagc DQUOTE, etagc = %x21 / %x23-7E / obs-text
_OPAQUE_TAG = re.compile(r'"[\x21\x23-\x7e\x80-\xff]*"')


def _require_if_match(if_match: Versions | None, current: StoredVersion) -> None:
    """412 unless the If-Match precondition holds: one of its versions is the current one, or for `*` there
    is a current version (RFC 9110 13.1.1: true when any listed ETag matches)."""
    if if_match is None:
        return
    holds = current.version_id in if_match or (ANY_VERSION in if_match and not current.deleted)
    if not holds:
        named = {ANY_VERSION: "*", NO_VERSION: "(an ETag of no version this server writes)"}
        asked = ", ".join(named.get(v, f"version {v}") for v in sorted(if_match, reverse=True))
        state = " (deleted)" if current.deleted else ""
        raise precondition_failed(f"If-Match {asked} does not hold: the current version of "
                                  f"{current.resource_type}/{current.id} is {current.version_id}{state}")


def _none_match_fails(none_match: frozenset[int], current: StoredVersion) -> bool:
    """RFC 9110 13.1.2: If-None-Match is false when it is `*` or names the current version (weak comparison)."""
    return ANY_VERSION in none_match or current.version_id in none_match


def unchanged(stored: StoredVersion, none_match: frozenset[int] | None, modified_since: datetime | None,
              previous_updated: datetime | None = None) -> bool:
    """Whether a conditional read answers 304 Not Modified (http.html#cread): If-None-Match (a version
    or `*`) wins over If-Modified-Since, as RFC 9110 13.2.2 orders them.

    `previous_updated`, for an If-Modified-Since HTTP-date (`modified_since` then the last instant of the
    second it names): the lastUpdated of the version before the current one. A Last-Modified date cannot
    tell apart two versions written within one second (RFC 9110 8.8.2.2): if that one falls in the same
    second, the client may hold either and gets the resource (200), never a 304 for a copy that may be
    stale. A Bundle entry's ifModifiedSince is an instant, compared exactly, and passes none."""
    if none_match is not None:
        return _none_match_fails(none_match, stored)
    if modified_since is None or stored.last_updated > modified_since:
        return False
    second_starts = modified_since - timedelta(microseconds=999999)
    return previous_updated is None or previous_updated < second_starts


def _require_if_none_match(if_none_match: frozenset[int] | None, current: StoredVersion | None) -> None:
    """412 unless the If-None-Match precondition of a write holds (RFC 9110 13.1.2): `*` fails when the
    resource has a current representation, a list of ETags when it names the current version. An unknown
    or deleted resource has none, so an update with `If-None-Match: *` creates it and never overwrites."""
    if if_none_match is None or current is None or current.deleted:
        return
    if _none_match_fails(if_none_match, current):
        asked = "*" if ANY_VERSION in if_none_match else f"version {current.version_id}"
        raise precondition_failed(f"If-None-Match {asked} does not hold: {current.resource_type}/{current.id} "
                                  f"exists at version {current.version_id}")


def if_match_without_match(resource_type: str) -> FHIRError:
    """If-Match on a conditional update whose criteria match nothing: no version can match (a create would
    ignore it)."""
    return precondition_failed(f"No {resource_type} matches the criteria, If-Match cannot hold")


def update_as_create_target(conn: Connection, resource_type: str, resource_id: str) -> None:
    """A conditional update whose criteria match nothing and whose body has an id: R4 http.html#cond-update,
    "No matches, id provided: The server treats the interaction as an Update as Create interaction". Only
    as a create, though: an id that names a current resource the criteria did not match is a 409 (as R5
    states: "No matches, id provided and already exist: The server rejects the update with a 409
    Conflict error"), never an update of a resource the client's criteria did not select. A deleted one
    is brought back, as an update of it would."""
    _check_client_id(resource_id, resource_type)
    current = repo.current(conn, resource_type, resource_id)
    if current is not None and not current.deleted:
        raise FHIRError.of(409, "conflict", f"No {resource_type} matches the criteria, and {resource_type}/{resource_id}, "
                           "the id the resource carries, is another resource: a conditional update creates under "
                           "that id only when it is free", f"{resource_type}.id")


def _no_current_version(resource_type: str, resource_id: str, current: StoredVersion | None) -> FHIRError:
    """If-Match on a resource without a current representation: it cannot hold (RFC 9110 13.1.1)."""
    state = "does not exist" if current is None else f"was deleted (version {current.version_id})"
    return precondition_failed(f"{resource_type}/{resource_id} {state}, If-Match cannot hold")


def _check_body_type(body: object, resource_type: str) -> dict:
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object holding a resource", resource_type,
                          code="structure")
    actual = body.get("resourceType")
    if actual is None:
        raise bad_request("The resource has no resourceType", resource_type, code="required")
    if actual != resource_type:
        raise bad_request(
            f"resourceType '{actual}' does not match the endpoint's type '{resource_type}'", resource_type)
    return body


def criteria_key(resource_type: str, criteria: list[tuple[str, str]]) -> str:
    """The conditional-create key of parsed criteria (parse_criteria): REST and Bundle entries claim the same."""
    # empty parameters select nothing (search.html: ignored), so `identifier=x&family=` is `identifier=x`
    canonical = "&".join(f"{k}={v}" for k, v in sorted(criteria) if v != "")
    return hashlib.sha256(f"{resource_type}?{canonical}".encode()).hexdigest()


class ResourceService:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- reads -----------------------------------------------------------------------------

    def read(self, resource_type: str, resource_id: str) -> StoredVersion:
        require_rest_type(resource_type)
        guard.require("read", resource_type)  # before the lookup: no answer tells a caller what exists
        stored = repo.read_current(self.db, resource_type, resource_id)  # the hot path: no snapshot needed
        if stored is None:
            raise not_found(f"{resource_type}/{resource_id} is not known")
        return _visible_read("read", stored)

    def updated_before(self, current: StoredVersion) -> datetime | None:
        """The lastUpdated of the version before `current` (unchanged's `earlier`), None for a first one:
        one keyed row, without a snapshot (as a read by id)."""
        if current.version_id < 2:
            return None
        return repo.version_updated(self.db, current.resource_type, current.id, current.version_id - 1)

    def vread(self, resource_type: str, resource_id: str, version_id: str) -> StoredVersion:
        require_rest_type(resource_type)
        with self.db.read() as conn:
            return self.read_in(conn, resource_type, resource_id, version_id)

    @staticmethod
    def read_in(conn: Connection, resource_type: str, resource_id: str, version_id: str | None = None) -> StoredVersion:
        """read, or with `version_id` vread, on `conn`: a snapshot, or the unit of work of a batch or
        transaction whose GET entries see its earlier entries' writes. Checks and answers as the REST
        interactions do: 403 before anything is looked up, 404, 410 for a deleted resource or version."""
        interaction = "read" if version_id is None else "vread"
        guard.require(interaction, resource_type)
        return _visible_read(interaction, stored_version(conn, resource_type, resource_id, version_id))

    # --- create ----------------------------------------------------------------------------

    def create(self, resource_type: str, body: object, *, if_none_exist: str | list[tuple[str, str]] | None = None,
               base_url: str = "") -> WriteResult:
        return self.checked_create(resource_type, body, if_none_exist=if_none_exist, base_url=base_url)()

    def checked_create(self, resource_type: str, body: object, *,
                       if_none_exist: str | list[tuple[str, str]] | None = None,
                       base_url: str = "") -> Callable[[], WriteResult]:
        """Check and validate a create now (no database work); returns the step that stores it. The
        REST layer runs the two apart: validation need not hold SQLite's writer (api/rest_routes.py).
        `if_none_exist`: the header's text, or criteria already parsed (a create's URL query)."""
        require_rest_type(resource_type)
        resource = without_client_id(_check_body_type(body, resource_type))
        warnings = validate_for_write(resource, resource_type)
        if if_none_exist is None:
            return StoreStep(self.db, lambda conn: self._create_in(conn, resource_type, resource, warnings))
        criteria = parse_criteria(if_none_exist, resource_type)
        return lambda: self._conditional_create(resource_type, resource, warnings, criteria, base_url)

    def _conditional_create(self, resource_type: str, resource: dict, warnings: list[Issue],
                            criteria: list[tuple[str, str]], base_url: str) -> WriteResult:
        key = criteria_key(resource_type, criteria)
        for _attempt in range(RACE_ATTEMPTS):
            try:
                with self.db.write() as conn:
                    existing = find_ids(conn, resource_type, criteria, base_url)
                    if len(existing) > 1:
                        raise multiple_matches(
                            f"If-None-Exist criteria match {guard.how_many(len(existing))} {resource_type} resources")
                    if existing:
                        stored = repo.current(conn, resource_type, existing[0])
                        assert stored is not None
                        guard.check_resource("read", resource_type, stored.content)  # answered with it: a read
                        return WriteResult(200, stored, warnings)
                    result = self._create_in(conn, resource_type, resource, warnings)
                    _claim(conn, resource_type, key, result.version.id)
                    return result
            except _LostRace:  # the unit of work rolled back: nothing of ours was written
                pass
            # Another request with the same criteria won; answer with its resource if it still matches
            winner = self._settle_lost_race(resource_type, key, criteria, base_url)
            if winner is not None:
                guard.check_resource("read", resource_type, winner.content)
                return WriteResult(200, winner, warnings)
        raise conflict("Conditional create could not settle under concurrent writes; retry the request")

    def _settle_lost_race(self, resource_type: str, key: str, criteria: list[tuple[str, str]],
                          base_url: str) -> StoredVersion | None:
        """After a concurrent request with the same criteria claimed `key` first: the resource it
        created, if that still matches the criteria; otherwise the key is stale (the resource changed
        since) and is released for the next attempt, and the answer is None."""
        with self.db.write() as conn:
            owner = matching_key_owner(conn, resource_type, key,
                                       lambda: find_ids(conn, resource_type, criteria, base_url))
            return None if owner is None else repo.current(conn, resource_type, owner)

    def _create_in(self, conn: Connection, resource_type: str, resource: dict, warnings: list[Issue],
                   resource_id: str | None = None, method: str = "POST") -> WriteResult:
        resource_id = resource_id or new_resource_id()
        stored, doc = self._prepare(resource_type, resource_id, 1, resource, conn)
        guard.check_resource("create" if method == "POST" else "update", resource_type, doc)
        issues = warnings + self._run_hooks_check(conn, resource_type, resource_id, method, doc, None)
        if not repo.insert_new(conn, stored, method):
            raise CreatedConcurrently(f"{resource_type}/{resource_id} was created by a concurrent request")
        self._after_write(conn, resource_type, resource_id, method, doc, None, stored)
        return WriteResult(201, stored, issues)

    # --- update ----------------------------------------------------------------------------

    def checked_update(self, resource_type: str, resource_id: str, body: object, *, if_match: Versions | None = None,
                       if_none_match: frozenset[int] | None = None) -> Callable[[], WriteResult]:
        """As checked_create: checks and validation now, the returned step stores the update."""
        require_rest_type(resource_type)
        resource = _check_body_type(body, resource_type)
        body_id = resource.get("id")
        if body_id is None:
            raise bad_request("The resource in an update must carry its id", f"{resource_type}.id", code="required")
        if body_id != resource_id:
            raise bad_request(f"Resource id '{body_id}' does not match the URL id '{resource_id}'",
                              f"{resource_type}.id")
        warnings = validate_for_write(resource, resource_type)
        return StoreStep(self.db, lambda conn: self._update_in(
            conn, resource_type, resource_id, resource, warnings, if_match, "PUT", if_none_match))

    def conditional_update(self, resource_type: str, criteria: list[tuple[str, str]], body: object, *,
                           if_match: Versions | None = None, if_none_match: frozenset[int] | None = None,
                           base_url: str = "") -> WriteResult:
        require_rest_type(resource_type)
        resource = _check_body_type(body, resource_type)
        warnings = validate_for_write(resource, resource_type)
        criteria = parse_criteria(criteria)
        key = criteria_key(resource_type, criteria)
        for _attempt in range(RACE_ATTEMPTS):
            try:
                with self.db.write() as conn:
                    return self._conditional_update_in(conn, resource_type, criteria, key, resource, warnings,
                                                       if_match, if_none_match, base_url)
            except _LostRace:  # a concurrent request created the match first: the next attempt updates it
                self._settle_lost_race(resource_type, key, criteria, base_url)
        raise conflict("Conditional update could not settle under concurrent writes; retry the request")

    def _conditional_update_in(self, conn: Connection, resource_type: str, criteria: list[tuple[str, str]],
                               key: str, resource: dict, warnings: list[Issue], if_match: Versions | None,
                               if_none_match: frozenset[int] | None, base_url: str) -> WriteResult:
        matches = find_ids(conn, resource_type, criteria, base_url)
        body_id = resource.get("id")
        if len(matches) > 1:
            raise multiple_matches(f"The criteria match {guard.how_many(len(matches))} {resource_type} resources")
        if not matches:
            if if_match is not None:
                raise if_match_without_match(resource_type)
            # The criteria's key makes concurrent requests with the same criteria create one resource, as
            # for conditional creates (the others then update it).
            if body_id is None:  # R4 http.html#cond-update: "No matches, no id provided: The server creates the resource"
                result = self._create_in(conn, resource_type, resource, warnings, method="PUT")
            else:
                update_as_create_target(conn, resource_type, body_id)
                result = self._update_in(conn, resource_type, body_id, resource, warnings, None, "PUT", if_none_match)
            _claim(conn, resource_type, key, result.version.id)
            return result
        if body_id is not None and body_id != matches[0]:
            raise bad_request(
                f"Resource id '{body_id}' differs from the id '{matches[0]}' the criteria matched",
                f"{resource_type}.id")
        return self._update_in(conn, resource_type, matches[0], resource, warnings, if_match, "PUT", if_none_match)

    def _update_in(self, conn: Connection, resource_type: str, resource_id: str, resource: dict,
                   warnings: list[Issue], if_match: Versions | None, method: str,
                   if_none_match: frozenset[int] | None = None) -> WriteResult:
        current = repo.current(conn, resource_type, resource_id, for_update=True)
        if current is None:
            if if_match is not None:
                raise _no_current_version(resource_type, resource_id, current)
            _check_client_id(resource_id, resource_type)
            return self._create_in(conn, resource_type, resource, warnings, resource_id, method)
        _require_if_match(if_match, current)  # before If-None-Match, as RFC 9110 13.2.2 orders them
        _require_if_none_match(if_none_match, current)
        previous = None if current.deleted else load_stored(current.content)
        guard.check_resource("patch" if method == "PATCH" else "update", resource_type, previous)
        stored, doc = self._prepare(resource_type, resource_id, current.version_id + 1, resource, conn)
        guard.check_resource("patch" if method == "PATCH" else "update", resource_type, doc)
        issues = warnings + self._run_hooks_check(conn, resource_type, resource_id, method, doc, previous)
        if not repo.replace(conn, stored, current.version_id, method):
            raise conflict(f"{resource_type}/{resource_id} was changed by a concurrent request; read it again")
        self._after_write(conn, resource_type, resource_id, method, doc, previous, stored)
        return WriteResult(201 if current.deleted else 200, stored, issues)

    # --- patch -----------------------------------------------------------------------------

    def patch(self, resource_type: str, resource_id: str, patch_body: object, content_type: str, *,
              if_match: Versions | None = None) -> WriteResult:
        require_rest_type(resource_type)

        def work(conn: Connection) -> WriteResult:
            current = repo.current(conn, resource_type, resource_id, for_update=True)
            if current is None:
                raise not_found(f"{resource_type}/{resource_id} is not known")
            if current.deleted:
                raise gone_version(current)
            return self._patch_in(conn, current, patch_body, content_type, if_match)
        return self.db.run_write(work)

    def conditional_patch(self, resource_type: str, criteria: list[tuple[str, str]], patch_body: object,
                          content_type: str, *, if_match: Versions | None = None, base_url: str = "") -> WriteResult:
        require_rest_type(resource_type)
        criteria = parse_criteria(criteria)
        with self.db.write() as conn:
            matches = find_ids(conn, resource_type, criteria, base_url)
            if not matches:
                raise not_found(f"No {resource_type} matches the criteria")
            if len(matches) > 1:
                raise multiple_matches(f"The criteria match {guard.how_many(len(matches))} {resource_type} resources")
            current = repo.current(conn, resource_type, matches[0], for_update=True)
            assert current is not None
            return self._patch_in(conn, current, patch_body, content_type, if_match)

    def _patch_in(self, conn: Connection, current: StoredVersion, patch_body: object, content_type: str,
                  if_match: Versions | None, links: Callable[[dict], dict] | None = None) -> WriteResult:
        """`links`: a transaction's rewriting of the fullUrls of its entries, applied to the patched
        resource (a patch may add a reference to a resource the same transaction creates)."""
        _require_if_match(if_match, current)
        patched = apply_patch(load_stored(current.content), patch_body, content_type)
        resource_type, resource_id = current.resource_type, current.id
        if not isinstance(patched, dict) or patched.get("resourceType") != resource_type:
            raise FHIRError.of(422, "processing", "The patch changes the resource type", resource_type)
        if links is not None:
            patched = links(patched)
        if patched.get("id") != resource_id:
            raise FHIRError.of(422, "processing", "The patch changes the resource id", f"{resource_type}.id")
        # Server-owned meta is re-set below; a patch cannot forge it, and validation sees the result.
        warnings = _validate_patched(patched, resource_type)
        return self._update_in(conn, resource_type, resource_id, patched, warnings, frozenset({current.version_id}),
                               "PATCH")

    # --- delete ----------------------------------------------------------------------------

    def delete(self, resource_type: str, resource_id: str, *, if_match: Versions | None = None) -> DeleteResult:
        """Deleting a missing or already deleted resource succeeds and changes nothing
        (http://hl7.org/fhir/R4/http.html#delete: 200/204 'if the resource does not exist at all'),
        unless If-Match asks for a version: then nothing matches it (412)."""
        require_rest_type(resource_type)
        return DeleteResult(self.db.run_write(
            lambda conn: self._delete_in(conn, resource_type, resource_id, if_match)))

    def conditional_delete(self, resource_type: str, criteria: list[tuple[str, str]], *,
                           if_match: Versions | None = None, base_url: str = "") -> DeleteResult:
        """conditionalDelete = multiple: every match is deleted, in one unit of work."""
        require_rest_type(resource_type)
        criteria = parse_criteria(criteria)
        with self.db.write() as conn:
            ids = find_ids(conn, resource_type, criteria, base_url)
            return DeleteResult(self._delete_matches_in(conn, resource_type, ids, if_match))

    def _delete_matches_in(self, conn: Connection, resource_type: str, ids: list[str],
                           if_match: Versions | None) -> int:
        """Delete what conditional criteria matched. If-Match names the version of one resource: with
        several matches it cannot hold for all of them, and deleting only those it holds for would make
        the outcome depend on which matched, so the request fails as a whole (412)."""
        if if_match is not None and len(ids) != 1:
            raise multiple_matches(f"If-Match needs the criteria to match exactly one {resource_type}; "
                                      f"they match {guard.how_many(len(ids))}")
        return sum(self._delete_in(conn, resource_type, i, if_match) for i in ids)

    def _delete_in(self, conn: Connection, resource_type: str, resource_id: str,
                   if_match: Versions | None = None) -> int:
        current = repo.current(conn, resource_type, resource_id, for_update=True)
        if current is None or current.deleted:
            if if_match is not None:  # a deletion is no current representation: no version can match
                raise _no_current_version(resource_type, resource_id, current)
            return 0
        _require_if_match(if_match, current)
        previous = load_stored(current.content)
        guard.check_resource("delete", resource_type, previous)
        issues = self._run_hooks_check(conn, resource_type, resource_id, "DELETE", None, previous)
        if any(i.is_error for i in issues):
            raise FHIRError(422, issues)
        tombstone = StoredVersion(resource_type, resource_id, current.version_id + 1, now_utc(), True, None)
        if not repo.replace(conn, tombstone, current.version_id, "DELETE"):
            raise conflict(f"{resource_type}/{resource_id} was changed by a concurrent request")
        delete_index(conn, resource_type, resource_id)
        repo.release_conditional_keys_of(conn, resource_type, resource_id)
        for hook in write_hooks.registered():
            hook.after_write(conn, write_hooks.Change(resource_type, resource_id, "DELETE", None, previous))
        audit.record_write(conn, "delete", resource_type, resource_id, tombstone.version_id, None, previous)
        return 1

    # --- shared write steps ------------------------------------------------------------------

    def _prepare(self, resource_type: str, resource_id: str, version_id: int, resource: dict,
                 conn: Connection | None = None) -> tuple[StoredVersion, dict]:
        last_updated = now_utc()
        doc = with_server_meta(resource, resource_id, version_id, last_updated)
        if conn is not None:  # hooks may derive server-generated content, e.g. the IPT CarePlan narrative
            for hook in write_hooks.registered():
                prepare = getattr(hook, "prepare", None)
                if prepare is not None:
                    doc = prepare(conn, resource_type, doc)
        return StoredVersion(resource_type, resource_id, version_id, last_updated, False, dump_json(doc)), doc

    def _run_hooks_check(self, conn: Connection, resource_type: str, resource_id: str, method: str,
                         doc: dict | None, previous: dict | None) -> list[Issue]:
        issues: list[Issue] = []
        change = write_hooks.Change(resource_type, resource_id, method, doc, previous)
        deferred = conn.info.get(_DEFERRED_CHECKS)
        if deferred is not None:  # a transaction: rules are checked once all its entries are written
            deferred.append((conn.info.get(_DEFERRED_TAG), change))
            return issues
        for hook in write_hooks.registered():
            issues.extend(hook.check(conn, change))
        if any(i.is_error for i in issues):
            raise FHIRError(422, issues)
        return issues

    def _after_write(self, conn: Connection, resource_type: str, resource_id: str, method: str,
                     doc: dict, previous: dict | None, stored: StoredVersion) -> None:
        write_index(conn, resource_type, resource_id, doc)
        change = write_hooks.Change(resource_type, resource_id, method, doc, previous)
        for hook in write_hooks.registered():
            hook.after_write(conn, change)
        interaction = {"POST": "create", "PATCH": "patch"}.get(method, "create" if previous is None else "update")
        audit.record_write(conn, interaction, resource_type, resource_id, stored.version_id, doc, previous)


    # --- in-transaction steps: the caller owns the unit of work (transactions, bulk import) -----
    create_in = _create_in
    update_in = _update_in
    patch_in = _patch_in
    delete_in = _delete_in
    delete_matches_in = _delete_matches_in


_DEFERRED_CHECKS = "ipt_fhir.deferred_checks"
_DEFERRED_TAG = "ipt_fhir.deferred_tag"


@contextmanager
def deferred_rule_checks(conn: Connection) -> Iterator[list[tuple[object, write_hooks.Change]]]:
    """Inside the block, writes on `conn` queue their write-hook checks instead of running them (a
    transaction's session Encounter may precede its CarePlan). `after_write` side effects still run
    in write order. The caller runs `run_deferred_checks` before commit."""
    queue: list[tuple[object, write_hooks.Change]] = []
    conn.info[_DEFERRED_CHECKS] = queue
    try:
        yield queue
    finally:
        conn.info.pop(_DEFERRED_CHECKS, None)
        conn.info.pop(_DEFERRED_TAG, None)


def tag_deferred_checks(conn: Connection, tag: object) -> None:
    """Label the checks queued from now on (e.g. with the Bundle entry index), for error reports."""
    conn.info[_DEFERRED_TAG] = tag


def run_deferred_checks(conn: Connection, queue: list[tuple[object, write_hooks.Change]],
                        refused: Callable[[object, FHIRError], FHIRError] | None = None
                        ) -> list[tuple[object, list[Issue]]]:
    """Run every hook's check on the final state; returns (tag, issues) per change with any issue. A check
    that refuses a change outright (a write to the server's own conformance resources) raises its error,
    as `refused(tag, error)` makes it when given (a transaction's, located at its entry)."""
    conn.info.pop(_DEFERRED_CHECKS, None)
    found = []
    hooks = write_hooks.registered()
    last_write = {f"{change.resource_type}/{change.id}": n for n, (_, change) in enumerate(queue)}
    for n, (tag, change) in enumerate(queue):
        change = replace(change, written_after=write_hooks.WrittenAfter(last_write, n))
        try:
            issues = [i for hook in hooks for i in hook.check(conn, change)]
        except FHIRError as exc:
            if refused is None:
                raise
            raise refused(tag, exc) from None
        if issues:
            found.append((tag, issues))
    return found


RACE_ATTEMPTS = 5  # conditional writes that lost a race to the same criteria, tried again up to this often


T = TypeVar("T")


def run_settled(run: Callable[[], T], lost: type[Exception]) -> T:
    """`run()`, run again while it loses a race (raises `lost`, its unit of work rolled back) up to
    RACE_ATTEMPTS times in all; the last attempt's exception is the caller's."""
    for _attempt in range(RACE_ATTEMPTS - 1):
        try:
            return run()
        except lost:
            pass
    return run()


class CreatedConcurrently(FHIRError):
    """409: another request created this (type, id) between this unit's look and its insert."""

    def __init__(self, diagnostics: str) -> None:
        super().__init__(409, [error("conflict", diagnostics)])


class _LostRace(Exception):
    """A concurrent conditional create or update with the same criteria claimed the key first."""


def matching_key_owner(conn: Connection, resource_type: str, key: str, matching: Callable[[], list[str]]) -> str | None:
    """The resource that claimed the conditional-create `key`, if it still matches the key's criteria
    (`matching()`: the ids they match now). A key whose owner no longer matches (changed since, or never
    matched what its request created) is stale and is released, so that the next claim succeeds
    (http.html#ccreate: "No matches: The server processes the create as normal")."""
    owner = repo.conditional_key_owner(conn, resource_type, key)
    if owner is None:
        return None
    if owner in matching():
        return owner
    repo.release_conditional_key(conn, resource_type, key)
    return None


def _claim(conn: Connection, resource_type: str, key: str, resource_id: str) -> None:
    """Record that `resource_id`, created in this unit of work, answers the criteria of `key`; raises
    _LostRace (ending the unit, so nothing of it is written) when a concurrent request did so first."""
    if not repo.claim_conditional_key(conn, resource_type, key, resource_id):
        raise _LostRace()


def _validate_patched(patched: dict, resource_type: str) -> list[Issue]:
    try:
        return validate_for_write(patched, resource_type)
    except FHIRError as exc:
        # The patch itself was well-formed; its result is not a valid resource: 422 per the spec.
        raise FHIRError(422, exc.issues) from None


def _check_client_id(resource_id: str, resource_type: str) -> None:
    import re

    if not re.fullmatch(r"[A-Za-z0-9\-\.]{1,64}", resource_id):
        raise bad_request(f"'{resource_id}' is not a valid FHIR id", f"{resource_type}.id")


def _visible_read(interaction: str, stored: StoredVersion) -> StoredVersion:
    """A version found by read or vread, if the caller may see it (410 if deleted); the read is audited."""
    if stored.deleted:
        raise gone_version(stored)
    guard.check_resource(interaction, stored.resource_type, stored.content)
    audit.note_read(interaction, stored.resource_type, stored.id, stored.version_id)
    return stored


def stored_version(conn: Connection, resource_type: str, resource_id: str, version_id: str | None = None
                   ) -> StoredVersion:
    """The current version, or version `version_id`, from the store, deleted or not; a 404 as read and
    vread answer when there is none."""
    if version_id is None:
        stored = repo.current(conn, resource_type, resource_id)
    else:
        number = version_number(version_id)
        stored = None if number is None else repo.version(conn, resource_type, resource_id, number)
    if stored is None:
        raise _unknown(resource_type, resource_id, version_id, exists=version_id is not None and
                       repo.current(conn, resource_type, resource_id) is not None)
    return stored


def _unknown(resource_type: str, resource_id: str, version_id: str | None, *, exists: bool) -> FHIRError:
    """The 404 of a read or vread; `exists`: the resource does, only the version is unknown."""
    what = f"{resource_type}/{resource_id}"
    return not_found(f"{f'version {version_id} of ' if exists else ''}{what} is not known")


def gone_version(stored: StoredVersion) -> FHIRError:
    err = gone(f"{stored.resource_type}/{stored.id} was deleted")
    err.headers["ETag"] = f'W/"{stored.version_id}"'
    return err
