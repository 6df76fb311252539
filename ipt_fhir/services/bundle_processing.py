"""Batch and transaction Bundles (http://hl7.org/fhir/R4/http.html#transaction), HTTP-free.

A transaction is one unit of work: entries are validated first, then processed in the order the
specification gives (DELETE, POST, PUT/PATCH, GET/HEAD; read-only history, metadata and operation
entries with the GETs, whatever their method) on one Connection; fullUrls (`urn:uuid:`, `urn:oid:` and
RESTful ones, against whose base an entry's relative references are read: bundle.html, "Resolving
references in Bundles") and conditional references (`Practitioner?identifier=sys|val`) are rewritten to
the ids they stand for, in references and in every other link (uri-typed elements, narrative href/src:
services/placeholders.py, `_link_targets`); write-hook rule checks are deferred until every entry is
written (a session Encounter may come before its CarePlan) and any failure rolls everything back, naming
the entry. A batch runs each entry in its own unit of work and reports per entry; its entries' conditional
references are refused, not resolved ("in a transaction (and only in a transaction)", http.html#trules).

Errors of an entry, in either, point into the Bundle with FHIRPath: `Bundle.entry[i]` and, where the
element is known, below it (`….request.ifNoneExist`, `….resource.subject.reference`).

No two entries may act on the same resource (http.html#trules), counting a conditional update, patch or
delete as every resource its criteria match (`_Claims`). A transaction with such entries fails; in a
batch, whose entries must not depend on each other (http.html#brules: "Servers SHOULD validate that
this is the case"), the later entry alone is refused.

Entries that are neither CRUD nor search (history, `metadata`, operations such as `$validate` and
`$everything`) are parsed and answered by services/bundle_interactions.py, through the same service
calls as the standalone requests; an operation that writes is refused in a transaction (400).
"""
from __future__ import annotations

import base64
import binascii
import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, Callable, Iterable, Mapping, NamedTuple, TypeVar
from urllib.parse import parse_qsl

from sqlalchemy.engine import Connection

from ipt_fhir.fhir.dates import parse_instant
from ipt_fhir.fhir.jsonio import dump_json, parse_json
from ipt_fhir.fhir.outcome import (
    FHIRError, Issue, bad_request, error, multiple_matches, not_found, operation_outcome, read_only,
)
from ipt_fhir.fhir.patch import JSON_PATCH
from ipt_fhir.fhir.references import on_this_server, restful_parts
from ipt_fhir.fhir.resource_types import REST_TYPES, RESOURCE_TYPES
from ipt_fhir.fhir.validation import validate_envelope
from ipt_fhir.security import audit, guard
from ipt_fhir.services import resources as rs
from ipt_fhir.services import write_hooks
from ipt_fhir.services import search as search_service
from ipt_fhir.services.bundle_interactions import NON_PARAMS, EntryInteractions, OtherRequest, audited_as, parse_other
from ipt_fhir.services.ipt import conformance
from ipt_fhir.services.placeholders import NO_LINK_TARGETS, LinkTargets, is_placeholder, rewrite_links
from ipt_fhir.services.resources import ResourceService, WriteResult
from ipt_fhir.services.search import find_ids
from ipt_fhir.services.validation import validate_for_write
from ipt_fhir.store import bulk_write
from ipt_fhir.store import resources as repo
from ipt_fhir.store.database import Database
from ipt_fhir.store.ids import new_resource_id
from ipt_fhir.store.resources import StoredVersion
from ipt_fhir.store.search_index import table_rows

log = logging.getLogger(__name__)

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
_STATUS_TEXT = {200: "200 OK", 201: "201 Created", 204: "204 No Content", 304: "304 Not Modified"}
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
T = TypeVar("T")


class Creation(NamedTuple):
    """The criteria a creating entry answers (its ifNoneExist, or those of a conditional update that
    matched nothing): their conditional-create key, and the entry's element that holds them."""
    key: str
    criteria: list[tuple[str, str]]
    where: str


@dataclass
class Entry:
    index: int
    method: str
    resource_type: str
    resource_id: str | None = None
    version: str | None = None  # GET …/_history/vid
    criteria: list[tuple[str, str]] | None = None  # conditional update/patch/delete; GET search params
    query: str = ""
    full_url: str | None = None
    resource: dict | None = None
    if_none_exist: list[tuple[str, str]] | None = None  # POST: its ifNoneExist criteria
    if_match: frozenset[int] | None = None
    if_none_match: frozenset[int] | None = None  # versions; ANY_VERSION for *
    if_modified_since: datetime | None = None
    warnings: list[Issue] = field(default_factory=list)
    target_id: str | None = None  # the id this entry writes, known before any POST/PUT is written
    existing: bool = False  # POST with ifNoneExist that matched: nothing is written
    creation: Creation | None = None  # what an entry that creates under criteria claims (settle_target)
    patch_body: Any = None
    patch_type: str = ""
    other: OtherRequest | None = None  # history, metadata or an operation (bundle_interactions.py)
    # GET [base]/Patient/[id]/[type] or …/*: ("Patient", id); resource_type "" is every type of it, and
    # without a compartment, a system search (GET [base]?params)
    compartment: tuple[str, str] | None = None

    @property
    def acts_on_identity(self) -> bool:
        """DELETE, PUT and PATCH act on resources named by id or criteria; a POST creates a new one."""
        return self.method in ("DELETE", "PUT", "PATCH") and self.other is None

    @property
    def phase(self) -> int:
        """The step of http.html#trules processing: read-only interactions (GET, HEAD, and history,
        metadata and operations that do not write, whatever their method) come last."""
        return _ORDER["GET"] if self.other is not None else _ORDER[self.method]

    @property
    def writes(self) -> bool:
        """Whether the entry is a create, update or patch the write steps handle."""
        return self.other is None and self.method in ("POST", "PUT", "PATCH")


@dataclass
class EntryResult:
    status: int
    version: StoredVersion | None = None
    content: bytes | None = None  # GET bodies (Bundle or resource)
    issues: list[Issue] = field(default_factory=list)
    location: bool = True  # a create's, update's or patch's answer; reads, searches and operations have none
    resource: bool = True  # whether the entry carries `version`'s content (a 304 does not)


_ENTRY_PATH = re.compile(r"Bundle\.entry\[(\d+)\]")


def envelope_errors(bundle: dict) -> dict[int, FHIRError]:
    """The errors of the Bundle's own elements (an unknown element in an entry, a request.method outside
    http-verb…; each entry's resource is validated as that entry is processed), per entry: in a batch they
    fail that entry alone. Errors outside every entry fail the request (400)."""
    per_entry: dict[int, list[Issue]] = {}
    outside = []
    for issue in (*validate_envelope(bundle), *bundle_invariant_issues(bundle)):
        if not issue.is_error:
            continue
        m = _ENTRY_PATH.match(issue.expression[0]) if issue.expression else None
        if m is None:
            outside.append(issue)
        else:
            per_entry.setdefault(int(m.group(1)), []).append(issue)
    if outside:
        raise FHIRError(400, outside)
    # Located already (entry_error keeps them as they are): their expressions are paths in this Bundle,
    # where a resource's own start with its type, which may be Bundle too (a Bundle stored by an entry).
    return {i: FHIRError(400, [Issue(x.severity, x.code, f"Bundle.entry[{i}]: {x.diagnostics}", x.expression)
                               for x in issues]) for i, issues in per_entry.items()}


def bundle_invariant_issues(bundle: dict) -> list[Issue]:
    """The Bundle invariants (bundle.html#invariants) that can fail a batch or transaction, checked in one
    pass over the entries rather than in FHIRPath (bdl-7 compares every fullUrl with every other there):
    bdl-1 (total), bdl-2 (entry.search), bdl-4 (entry.response), bdl-7 (a fullUrl once, unless the
    versions differ) and bdl-8 (no versioned fullUrl); and that a RESTful fullUrl names the resource's
    own type and id. bdl-3 (a request per entry) is parse_entry's."""
    issues = []
    if "total" in bundle:
        issues.append(error("invariant", "bdl-1: total only when a search or history", "Bundle.total"))
    seen: set[tuple[str, str | None]] = set()
    for i, entry in enumerate(bundle.get("entry") or ()):
        if not isinstance(entry, dict):
            continue  # the envelope walk reports it
        at = f"Bundle.entry[{i}]"
        if "search" in entry:
            issues.append(error("invariant", "bdl-2: entry.search only when a search", f"{at}.search"))
        if "response" in entry:
            issues.append(error("invariant", "bdl-4: entry.response only in a batch-response, "
                                "transaction-response or history", f"{at}.response"))
        full_url = entry.get("fullUrl")
        if not isinstance(full_url, str):
            continue
        if "/_history/" in full_url:
            issues.append(error("invariant", "bdl-8: fullUrl cannot be a version specific reference",
                                f"{at}.fullUrl"))
        resource = entry.get("resource")
        restful = restful_parts(full_url)
        if (restful is not None and isinstance(resource, dict) and "id" in resource
                and (resource.get("resourceType"), resource["id"]) != restful[1:]):
            issues.append(error("invalid", f"fullUrl '{full_url}' disagrees with the resource's type and id: a "
                                "RESTful fullUrl SHALL be consistent with Resource.id (Bundle.entry.fullUrl)",
                                f"{at}.fullUrl"))
        meta = resource.get("meta") if isinstance(resource, dict) else None
        version = meta.get("versionId") if isinstance(meta, dict) else None
        key = (full_url, version if isinstance(version, str) else None)
        if key in seen:
            issues.append(error("invariant", f"bdl-7: fullUrl '{full_url}' is already the fullUrl of an "
                                "earlier entry (of the same version)", f"{at}.fullUrl"))
        seen.add(key)
    return issues


def checked_entry(index: int, raw: object, base_url: str, envelope: Mapping[int, FHIRError], *,
                  transaction: bool) -> Entry:
    """An entry of a batch or transaction, parsed and its resource validated, or the FHIRError that fails
    it; `envelope`: the Bundle's envelope_errors, whose entry elements parse_entry takes as checked.
    Conditional references are resolved "in a transaction (and only in a transaction)" (http.html
    #trules): in a batch entry one is refused as in a create or update of its own."""
    failure = envelope.get(index)
    if failure is not None:
        raise failure
    entry = parse_entry(index, raw, base_url)
    if entry.resource is not None:
        entry.warnings = validate_for_write(entry.resource, entry.resource_type, conditional_references=transaction)
    return entry


def entry_error(index: int, exc: FHIRError, raw_entry: object = None) -> FHIRError:
    """The entry's error, its issues pointing into the Bundle (expression Bundle.entry[i]…). `raw_entry`:
    the entry as sent, whose resource says which resource an expression like `CarePlan.status` is in."""
    prefix = f"Bundle.entry[{index}]"
    if exc.issues and all(i.diagnostics.startswith(f"{prefix}: ") for i in exc.issues):
        return exc  # already the entry's
    held = _held_type(raw_entry)
    issues = []
    for issue in exc.issues:
        exprs = tuple(_entry_expression(prefix, e, held) for e in issue.expression) or (prefix,)
        issues.append(Issue(issue.severity, issue.code, f"{prefix}: {issue.diagnostics}", exprs))
    return FHIRError(exc.status, issues, _entry_headers(exc.headers))


# An entry error's headers that still hold for the Bundle's own answer. Others describe the entry's URL
# or resource, not the endpoint the Bundle was posted to (Allow names the entry URL's methods, an ETag
# the version of the entry's resource).
_BUNDLE_LEVEL_HEADERS = frozenset({"www-authenticate", "retry-after"})


def _entry_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() in _BUNDLE_LEVEL_HEADERS}


_ENTRY_ELEMENTS = frozenset({"fullUrl", "resource", "request", "search", "response"})


def _held_type(raw_entry: object) -> str | None:
    resource = raw_entry.get("resource") if isinstance(raw_entry, dict) else None
    rtype = resource.get("resourceType") if isinstance(resource, dict) else None
    return rtype if isinstance(rtype, str) else None


def _entry_expression(prefix: str, expression: str, held: str | None = None) -> str:
    """An expression about the entry's resource or one of its elements, as a path in the Bundle. One about
    a resource of another type than the entry holds (`held`) names no element of the Bundle: a PATCH
    entry holds its patch (Parameters or Binary), not the patched CarePlan a rule refused; the entry itself."""
    head, _, rest = expression.partition(".")
    if head in RESOURCE_TYPES:
        if held is not None and head != held:
            return prefix
        return f"{prefix}.resource" + (f".{rest}" if rest else "")
    if head in _ENTRY_ELEMENTS:
        return f"{prefix}.{expression}"
    return prefix  # names nothing of the entry (a search parameter, say): the entry itself


def _located(exc: FHIRError, expression: str) -> FHIRError:
    """`exc` about `expression` of the entry. Search errors name the parameter, which is no element:
    the element is the one that holds the criteria."""
    issues = [Issue(i.severity, i.code, i.diagnostics, (expression,)) for i in exc.issues]
    return FHIRError(exc.status, issues, exc.headers)


class BundleService:
    def __init__(self, db: Database, resources: ResourceService, *, max_entries: int = 20000,
                 interactions: EntryInteractions | None = None) -> None:
        self.db = db
        self.resources = resources
        self.max_entries = max_entries
        self.interactions = interactions or EntryInteractions(db)

    def process(self, bundle: object, *, base_url: str, prefer: str, strict_search: bool) -> bytes:
        """`strict_search`: the request's `Prefer: handling=strict` (http.html#search), which its search
        entries follow: an unknown parameter is then that entry's 400, not a warning in its searchset."""
        kind, raw_entries, envelope = self._opened(bundle)
        base_url = base_url.rstrip("/")
        if kind == "transaction":
            results = self._transaction_settled(raw_entries, base_url, envelope, strict_search)
        else:
            results = self.batch(raw_entries, base_url, prefer, envelope, strict_search)
        return _response_bundle(f"{kind}-response", results, base_url, prefer)

    def entry_errors(self, bundle: object) -> list[tuple[int, FHIRError]]:
        """What processing `bundle` would refuse before writing, entry by entry (a dry run: all of them,
        where a transaction stops at the first); a Bundle-level error is raised."""
        kind, raw_entries, envelope = self._opened(bundle)
        errors = []
        for i, raw in enumerate(raw_entries):
            try:
                checked_entry(i, raw, "", envelope, transaction=kind == "transaction")
            except FHIRError as exc:
                errors.append((i, exc))
        return errors

    def _opened(self, bundle: object) -> tuple[str, list, Mapping[int, FHIRError]]:
        """The Bundle's type, entries and envelope errors (envelope_errors), once the Bundle as a whole
        can be processed: a batch or transaction with an array of at most max_entries entries."""
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise bad_request("POST to the base expects a Bundle of type batch or transaction", code="structure")
        kind = bundle.get("type")
        if kind not in ("batch", "transaction"):
            raise bad_request(f"Bundle.type must be 'batch' or 'transaction', not {kind!r}", "Bundle.type")
        raw_entries = bundle.get("entry", [])
        if not isinstance(raw_entries, list):  # null, {} and "" too: FHIR JSON has no null elements
            raise bad_request("Bundle.entry must be an array", "Bundle.entry", code="structure")
        if len(raw_entries) > self.max_entries:
            raise FHIRError.of(413, "too-long", f"The Bundle has {len(raw_entries)} entries; at most "
                               f"{self.max_entries} are accepted", "Bundle.entry")
        return kind, raw_entries, envelope_errors(bundle)

    # --- transaction -------------------------------------------------------------------------

    def _transaction_settled(self, raw_entries: list, base_url: str, envelope: Mapping[int, FHIRError],
                             strict_search: bool) -> list[EntryResult]:
        """A transaction whose conditional create lost its race to a concurrent request runs again as a
        whole (its unit of work rolled back: nothing of it was written), and its entry then finds the
        winner, as a batch entry and the REST call do; only a race lost every time is the 409."""
        return rs.run_settled(lambda: self.transaction(raw_entries, base_url, envelope, strict_search),
                              _LostConditionalCreate)

    def transaction(self, raw_entries: list, base_url: str, envelope: Mapping[int, FHIRError],
                    strict_search: bool) -> list[EntryResult]:
        entries = []
        for i, raw in enumerate(raw_entries):
            try:
                entry = checked_entry(i, raw, base_url, envelope, transaction=True)
                if entry.other is not None and entry.other.writes:
                    raise bad_request(f"${entry.other.name} writes in its own transaction, which cannot run inside "
                                      f"this transaction's unit of work: send it on its own or in a batch",
                                      "request.url", code="not-supported")
            except FHIRError as exc:
                raise entry_error(i, exc, raw) from None
            entries.append(entry)
        _check_unique_full_urls(entries)
        results: list[EntryResult | None] = [None] * len(entries)
        order = sorted(entries, key=lambda e: (e.phase, e.index))
        with self.db.write() as conn, rs.deferred_rule_checks(conn) as queue:
            writer = _Writer(self.resources, conn, base_url, strict_search=strict_search)
            current = None
            try:
                # Identities are resolved before anything is written: a conditional URL that matches a
                # resource another entry deletes overlaps it, though after the DELETE it matches nothing.
                for entry in entries:
                    current = entry
                    writer.claim_identities(entry)
                for entry in order:
                    if entry.phase != _ORDER["DELETE"]:
                        break
                    current = entry
                    rs.tag_deferred_checks(conn, entry.index)
                    results[entry.index] = writer.delete(entry)
                # Every id a POST/PUT/PATCH will write is settled before anything references it.
                for entry in order:
                    if entry.writes:
                        current = entry
                        writer.settle_target(entry)
                urn_map = {e.full_url: f"{e.resource_type}/{e.target_id}" for e in entries
                           if e.full_url and e.target_id}
                writer.references = urn_map
                writer.written = {f"{e.resource_type}/{e.target_id}": e for e in entries
                                  if e.writes and e.target_id and not e.existing}
                writer.matched = {f"{e.resource_type}/{e.target_id}" for e in entries if e.existing}
                writer.links = _link_targets(entries, urn_map, base_url)
                for entry in order:
                    if not entry.writes:
                        continue
                    current = entry
                    rs.tag_deferred_checks(conn, entry.index)
                    results[entry.index] = writer.write(entry)
                writer.flush()
                for entry in order:
                    if entry.method in ("PUT", "PATCH") and entry.criteria is not None:
                        current = entry
                        writer.check_no_overlap_with_writes(entry)
                current = None
                failures = rs.run_deferred_checks(
                    conn, queue, lambda tag, exc: entry_error(int(tag), exc, raw_entries[int(tag)]))
                errors = [(tag, issues) for tag, issues in failures if any(i.is_error for i in issues)]
                if errors:
                    tag, issues = errors[0]
                    raise entry_error(int(tag), FHIRError(422, [i for t, iss in errors for i in iss if t == tag]),
                                      raw_entries[int(tag)])
                for tag, issues in failures:
                    res = results[int(tag)]
                    if res is not None:
                        res.issues.extend(issues)
                for entry in order:
                    if entry.phase == _ORDER["GET"]:
                        current = entry
                        results[entry.index] = self._other_in_transaction(entry, writer) if entry.other is not None \
                            else writer.get(entry, self.db)
            except FHIRError as exc:
                if current is None or exc.issues and exc.issues[0].diagnostics.startswith("Bundle.entry"):
                    raise
                located = entry_error(current.index, exc, raw_entries[current.index])
                if isinstance(exc, _LostConditionalCreate):  # located, still a lost race: run again
                    located = _LostConditionalCreate(located.status, located.issues, located.headers)
                raise located from None
        return [r for r in results if r is not None]

    # --- batch -------------------------------------------------------------------------------

    def batch(self, raw_entries: list, base_url: str, prefer: str, envelope: Mapping[int, FHIRError],
              strict_search: bool) -> list[EntryResult]:
        results = []
        entries: list[Entry | FHIRError] = []
        for i, raw in enumerate(raw_entries):
            try:
                entries.append(checked_entry(i, raw, base_url, envelope, transaction=False))
            except FHIRError as exc:
                entries.append(exc)
        claims = self._batch_claims(entries, base_url)
        siblings = _placeholder_entries(raw_entries)
        for i, item in enumerate(entries):
            if isinstance(item, FHIRError):
                results.append(_failed(i, item, raw_entries[i]))
                continue
            try:
                results.append(self._batch_entry_settled(item, base_url, claims, siblings, prefer, strict_search))
            except FHIRError as exc:
                results.append(_failed(i, exc, raw_entries[i]))
            except Exception:  # noqa: BLE001 - a defect in one entry: its unit rolled back, the others stand
                log.exception("batch entry %d failed unexpectedly", i)
                results.append(_failed(i, FHIRError.of(500, "exception", "An internal error stopped this entry; "
                                                                         "it was not applied")))
        return results

    def _batch_entry_settled(self, entry: Entry, base_url: str, claims: _Claims, siblings: dict[str, int],
                             prefer: str, strict_search: bool) -> EntryResult:
        """A batch entry is an interaction on its own: one that lost a conditional-create race runs again
        in a new unit of work, whose search then finds the winner (200), as the REST path answers."""
        return rs.run_settled(lambda: self._batch_entry(entry, base_url, claims, siblings, prefer, strict_search),
                              _LostConditionalCreate)

    def _batch_claims(self, entries: list[Entry | FHIRError], base_url: str) -> _Claims:
        """Claim each entry's identities, resolved before any entry runs, as a transaction does; an entry
        that overlaps an earlier one is replaced in `entries` by its error and is not run."""
        claims = _Claims()
        acting = [(i, e) for i, e in enumerate(entries) if isinstance(e, Entry) and e.acts_on_identity]
        if not acting:
            return claims
        with self.db.read() as conn:
            writer = _Writer(self.resources, conn, base_url, claims)
            for i, entry in acting:
                try:
                    writer.claim_identities(entry)
                except FHIRError as exc:
                    entries[i] = exc
        return claims

    def _other_in_transaction(self, entry: Entry, writer: _Writer) -> EntryResult:
        """A history, metadata or operation entry of a transaction: on its connection, after every write."""
        other = entry.other
        assert other is not None
        writer.flush()
        if other.body is not None:  # links to the fullUrls of this transaction's entries
            other.body = rewrite_links(other.body, writer.references.get, writer.links)
        status, body = self.interactions.run(other, base_url=writer.base_url, conn=writer.conn)
        return EntryResult(status, content=body, location=False)

    def _other_in_batch(self, entry: Entry, base_url: str, prefer: str) -> EntryResult:
        """A history, metadata or operation entry of a batch, on its own (`prefer`: how an $apply
        store=true transaction answers; it holds only writes, so no search of it is strict or lenient)."""
        other = entry.other
        assert other is not None
        status, body = self.interactions.run(
            other, base_url=base_url, prefer=prefer,
            transaction=lambda bundle, base, prefer: self.process(bundle, base_url=base, prefer=prefer,
                                                                  strict_search=False))
        return EntryResult(status, content=body, location=False)

    def _batch_entry(self, entry: Entry, base_url: str, claims: _Claims,
                     siblings: dict[str, int], prefer: str, strict_search: bool) -> EntryResult:
        if entry.other is not None:
            return self._other_in_batch(entry, base_url, prefer)
        if entry.method in ("GET", "HEAD"):
            with self.db.read() as conn:
                return _Writer(self.resources, conn, base_url, strict_search=strict_search).get(entry, self.db)
        with self.db.write() as conn, rs.deferred_rule_checks(conn) as queue:
            writer = _Writer(self.resources, conn, base_url, claims)
            writer.batch_placeholders = siblings
            writer.resolves_conditional = False
            if entry.method == "DELETE":
                result = writer.delete(entry)
            else:
                writer.settle_target(entry)
                result = writer.write(entry)
                writer.flush()
            found = rs.run_deferred_checks(conn, queue)
            issues = [i for _, iss in found for i in iss]
            if any(i.is_error for i in issues):
                raise FHIRError(422, issues)
            result.issues.extend(issues)
            return result


class _Writer:
    """The steps of one unit of work on `conn`."""

    def __init__(self, resources: ResourceService, conn: Connection, base_url: str,
                 claims: _Claims | None = None, *, strict_search: bool = False) -> None:
        self.svc = resources
        self.conn = conn
        self.base_url = base_url
        self.strict_search = strict_search  # search entries refuse unknown parameters (Prefer: handling=strict)
        self.claims = claims if claims is not None else _Claims()
        self.references: dict[str, str] = {}  # fullUrl -> Type/id, for Reference.reference
        # The entry that creates, updates or patches each Type/id (a POST's creates it, in version 1)
        self.written: dict[str, Entry] = {}
        self.matched: set[str] = set()  # the Type/id an ifNoneExist entry matched (nothing written for it)
        self.links = NO_LINK_TARGETS  # for uri-typed elements and narrative links (_link_targets)
        self.batch_placeholders: dict[str, int] = {}  # in a batch: placeholder fullUrl -> entry index
        # False in a batch: conditional references stay as sent, for validation to refuse (an entry's
        # own resource in checked_entry, a patch's result as an update's)
        self.resolves_conditional = True
        self._conditional: dict[str, str] = {}
        self._creating: dict[str, int] = {}  # criteria key (ifNoneExist, conditional update) -> the entry creating under it
        self._pending: list[tuple[StoredVersion, dict]] = []

    def find(self, resource_type: str, criteria: list[tuple[str, str]], where: str | None = None) -> list[str]:
        """Ids matching `criteria`; errors point at `where`, the entry's element that holds them."""
        self.flush()
        try:
            return find_ids(self.conn, resource_type, rs.parse_criteria(criteria), self.base_url)
        except FHIRError as exc:
            if where is None:
                raise
            raise _located(exc, where) from None

    def check_no_overlap_with_writes(self, entry: Entry) -> None:
        """A conditional update or patch is judged again once every entry is written: identities are
        settled before anything is written, and "If any resource identities (including resolved identities
        from conditional update/delete) overlap in steps 1-3, then the transaction SHALL fail"
        (http.html#trules). Matching a resource another entry wrote (a POST's create, processed before
        PUTs; a PUT or PATCH by id; another conditional update that created) makes two entries act on one."""
        assert entry.criteria is not None
        if len(self.written) < 2:  # no other entry wrote anything: nothing to overlap with, no search
            return
        for found in self.find(entry.resource_type, entry.criteria, "request.url"):
            other = self.written.get(f"{entry.resource_type}/{found}")
            if other is not None and other is not entry:
                raise bad_request(f"The criteria also match {entry.resource_type}/{found}, which entry {other.index} "
                                  "writes: two entries of a transaction cannot act on one resource", "request.url")

    def claim_identities(self, entry: Entry) -> None:
        """Claim for `entry` the resources it would act on as the database stands now."""
        if not entry.acts_on_identity:
            return
        if entry.resource_id is not None:
            self.claims.claim(entry, [entry.resource_id])  # a write to one of the server's own: the hook's 405
            return
        assert entry.criteria is not None
        # A conditional update that matches nothing creates a new resource (settle_target): nothing to claim.
        ids = self.find(entry.resource_type, entry.criteria, "request.url")
        # Criteria matching one of the server's own conformance resources: refused (405) as the same
        # request on its own is, before any overlap with other entries is judged.
        published = next((i for i in ids if conformance.is_published(entry.resource_type, i)), None)
        if published is not None:
            raise _located(read_only(f"The criteria match {entry.resource_type}/{published}, which this server "
                                     "publishes read-only", entry.resource_type), "request.url")
        self.claims.claim(entry, ids)

    # Plain creates (new server-assigned ids, nothing to read first) are written set-at-a-time: their
    # rows, history and index rows go out in one statement per table (store/bulk_write.py: COPY on
    # PostgreSQL, executemany on SQLite) when the writer next reads, or at the end. `after_write` hooks then run for each of them in write order.
    def create(self, resource_type: str, resource_id: str, resource: dict, warnings: list[Issue]) -> EntryResult:
        stored, doc = self.svc._prepare(resource_type, resource_id, 1, resource, self.conn)
        guard.check_resource("create", resource_type, doc)  # security: scope, compartment, labels per entry
        issues = warnings + self.svc._run_hooks_check(self.conn, resource_type, resource_id, "POST", doc, None)
        self._pending.append((stored, doc))
        if len(self._pending) >= 1000:
            self.flush()
        return EntryResult(201, stored, issues=issues)

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        versions = [v for v, _ in pending]
        bulk_write.insert_current(self.conn, versions)
        bulk_write.insert_history(self.conn, versions, "POST")
        index: dict[str, list[tuple]] = {}
        for v, doc in pending:
            for kind, rows in table_rows(v.resource_type, v.id, doc).items():
                index.setdefault(kind, []).extend(rows)
        bulk_write.insert_index_rows(self.conn, index)
        hooks = write_hooks.registered()
        if hooks:
            for v, doc in pending:
                change = write_hooks.Change(v.resource_type, v.id, "POST", doc, None)
                for hook in hooks:
                    hook.after_write(self.conn, change)
        for v, doc in pending:  # security: one AuditEvent per created entry, in the same transaction
            audit.record_write(self.conn, "create", v.resource_type, v.id, 1, doc, None)

    def delete(self, entry: Entry) -> EntryResult:
        self.flush()
        if entry.criteria is not None:
            ids = self.find(entry.resource_type, entry.criteria, "request.url")
            self.claims.claim(entry, ids)  # the criteria may match otherwise than before the first write
            self.svc.delete_matches_in(self.conn, entry.resource_type, ids, entry.if_match)
        else:
            assert entry.resource_id is not None
            self.svc.delete_in(self.conn, entry.resource_type, entry.resource_id, entry.if_match)
        return EntryResult(204)

    def settle_target(self, entry: Entry) -> None:
        # Settled afresh on every run: a batch runs an entry again after it lost a race, and then the
        # criteria match what the winner created.
        entry.existing, entry.creation = False, None
        if entry.method == "POST":
            if entry.if_none_exist:
                where = "request.ifNoneExist"
                matches = self.find(entry.resource_type, entry.if_none_exist, where)
                if len(matches) > 1:
                    raise _located(multiple_matches(f"ifNoneExist criteria match {guard.how_many(len(matches))} "
                                                    f"{entry.resource_type} resources"), where)
                if matches:
                    entry.target_id, entry.existing = matches[0], True
                    return
                self._one_create_per_criteria(entry, entry.if_none_exist, where)
            entry.target_id = new_resource_id()
        elif entry.criteria is not None:  # conditional PUT / PATCH
            matches = self.find(entry.resource_type, entry.criteria, "request.url")
            if len(matches) > 1:
                raise _located(multiple_matches(
                    f"The criteria match {guard.how_many(len(matches))} {entry.resource_type} resources"), "request.url")
            if matches:
                body_id = (entry.resource or {}).get("id")
                if entry.method == "PUT" and body_id is not None and body_id != matches[0]:
                    raise bad_request(f"Resource id '{body_id}' differs from the id '{matches[0]}' the "
                                      f"criteria matched", f"{entry.resource_type}.id")
                entry.target_id = matches[0]
            elif entry.method == "PATCH":
                raise _located(not_found(f"No {entry.resource_type} matches the criteria"), "request.url")
            elif entry.if_match is not None:
                raise _located(rs.if_match_without_match(entry.resource_type), "request.ifMatch")
            else:  # http.html#cond-update: no match is a create, under the body's id if it has one
                self._one_create_per_criteria(entry, entry.criteria, "request.url")
                body_id = (entry.resource or {}).get("id")
                if body_id is None:
                    entry.target_id = new_resource_id()
                else:
                    try:
                        rs.update_as_create_target(self.conn, entry.resource_type, body_id)
                    except FHIRError as exc:
                        raise _located(exc, "resource.id") from None
                    entry.target_id = body_id
            self.claims.claim(entry, [entry.target_id])  # as for DELETE: resolved again, claimed again
        else:
            entry.target_id = entry.resource_id

    def _one_create_per_criteria(self, entry: Entry, criteria: list[tuple[str, str]], where: str) -> None:
        """Two entries of one transaction whose criteria (ifNoneExist, or a conditional update's) are the
        same and match nothing would both create: the criteria would then match two resources, which
        conditional creates and updates exist to prevent. Every entry's criteria are searched before
        anything is written (the outcome must not depend on the order entries are processed in), so the
        second cannot resolve to the first either; like entries that overlap (http.html#trules: "the
        transaction SHALL fail"), this is the client's error, 400, and naming both entries tells it what
        to merge. Where the criteria match a resource, both entries act on it: nothing is created twice.
        Sets entry.creation, which write() claims."""
        key = rs.criteria_key(entry.resource_type, criteria)
        entry.creation = Creation(key, criteria, where)
        first = self._creating.setdefault(key, entry.index)
        if first != entry.index:
            raise entry_error(entry.index, bad_request(
                f"The criteria of this entry are those of entry {first}, which creates the {entry.resource_type} "
                f"they describe; a transaction can create it only once", where))

    def _claim_creation_key(self, entry: Entry) -> None:
        """Claim the key of the criteria under which the entry creates (its ifNoneExist, or a conditional
        update's that matched nothing) for the resource it is about to create, as the REST interactions
        do: concurrent requests with the same criteria then create one resource between them.

        A key whose owner no longer matches the criteria (updated since, or never matched: Bundle-xds.json
        asks for an identifier its Patient does not carry) is stale: it is released and claimed again, as
        the REST path does (rs.matching_key_owner; http.html#ccreate: "No matches: The server processes the
        create as normal"). An owner that matches was committed by a concurrent request after this entry's
        search (PostgreSQL, READ COMMITTED). The entry cannot switch to it: the links of other entries
        already name the id settled for this one. So it is a 409 whose retry finds the winner (the batch
        retries by itself). The owner is read before the insert, so an insert fails only on such a race,
        which ends the unit of work anyway: no savepoint is needed for PostgreSQL's aborted transaction."""
        conn, resource_type = self.conn, entry.resource_type
        assert entry.creation is not None and entry.target_id is not None
        key, criteria, where = entry.creation
        owner = rs.matching_key_owner(conn, resource_type, key, lambda: self.find(resource_type, criteria, where))
        if owner is not None:
            raise _lost_race(resource_type, owner, where)
        if not repo.claim_conditional_key(conn, resource_type, key, entry.target_id):
            raise _lost_race(resource_type, None, where)  # PostgreSQL aborted the unit: nothing more can be read

    def write(self, entry: Entry) -> EntryResult:
        conn, svc = self.conn, self.svc
        assert entry.target_id is not None
        if entry.method == "POST" and not entry.existing and not entry.if_none_exist:
            return self.create(entry.resource_type, entry.target_id, self.rewrite(entry), entry.warnings)
        self.flush()
        if entry.method == "PATCH":
            current = repo.current(conn, entry.resource_type, entry.target_id, for_update=True)
            if current is None:
                raise _located(not_found(f"{entry.resource_type}/{entry.target_id} is not known"),
                               "request.url")
            if current.deleted:
                raise FHIRError.of(410, "deleted", f"{entry.resource_type}/{entry.target_id} was deleted",
                                   "request.url")
            return _result(svc.patch_in(conn, current, entry.patch_body, entry.patch_type, entry.if_match,
                                        links=partial(self._rewrite_resource, entry)))
        resource = self.rewrite(entry)
        if entry.method == "POST":
            if entry.existing:
                stored = repo.current(conn, entry.resource_type, entry.target_id)
                assert stored is not None
                guard.check_resource("read", entry.resource_type, stored.content)  # security
                return EntryResult(200, stored, issues=list(entry.warnings))
            if entry.creation is not None:  # first: a lost race then leaves nothing half written
                self._claim_creation_key(entry)
            return _result(svc.create_in(conn, entry.resource_type, resource, entry.warnings, entry.target_id))
        if entry.criteria is None:
            rs._check_client_id(entry.target_id, entry.resource_type)
        elif entry.creation is not None:
            self._claim_creation_key(entry)
        return _result(svc.update_in(conn, entry.resource_type, entry.target_id, resource, entry.warnings,
                                     entry.if_match, "PUT", entry.if_none_match))

    def get(self, entry: Entry, db: Database) -> EntryResult:
        """A read, vread or search entry. HEAD answers as GET does, without the body (RFC 9110 9.3.2)."""
        self.flush()
        with_body = entry.method != "HEAD"
        if entry.resource_id is None:
            path = entry.resource_type
            if entry.compartment is not None:
                path = f"{entry.compartment[0]}/{entry.compartment[1]}/{entry.resource_type or '*'}"
            request_url = f"{self.base_url}/{path}?{entry.query}" if path else f"{self.base_url}?{entry.query}"
            # audited as the standalone search: a system search (no type, no compartment) or a type's
            interaction = "search-type" if entry.resource_type or entry.compartment else "search-system"
            try:
                with audited_as(interaction):
                    body = search_service.search(db, entry.resource_type or None, entry.criteria or [],
                                                 base_url=self.base_url, request_url=request_url, conn=self.conn,
                                                 compartment=entry.compartment, strict=self.strict_search)
            except FHIRError as exc:
                raise _located(exc, "request.url") from None
            return EntryResult(200, content=body if with_body else None, location=False)
        try:
            stored = self.svc.read_in(self.conn, entry.resource_type, entry.resource_id, entry.version)
        except FHIRError as exc:
            raise _located(exc, "request.url") from None
        # ifModifiedSince is an instant, compared exactly: no second to share (unchanged's `earlier`)
        if rs.unchanged(stored, entry.if_none_match, entry.if_modified_since):  # as GET with the headers
            return EntryResult(304, stored, location=False, resource=False)
        subset = search_service.subset_read(stored.content, entry.resource_type, entry.criteria or []) \
            if with_body and entry.criteria else None  # _summary, _elements, as on GET [type]/[id]
        return EntryResult(200, stored, content=subset, location=False, resource=with_body)

    # --- references ----------------------------------------------------------------------------

    def rewrite(self, entry: Entry) -> dict:
        """The entry's resource with fullUrls and conditional references replaced by Type/id wherever it
        links; its relative references are read against its own fullUrl's base, if that is RESTful."""
        return self._rewrite_resource(entry, entry.resource or {})

    def _rewrite_resource(self, entry: Entry, resource: dict) -> dict:
        """rewrite for `resource`: the entry's own, or what its patch made of the stored one. A relative
        reference in an entry without a RESTful fullUrl (none, or a urn:) names a resource on this server:
        it is read against this server's base, so `Patient/a` finds the entry whose fullUrl is
        [this base]/Patient/a, as an absolute reference to it would."""
        base = (restful_base(entry.full_url) or self.base_url) if self.references else None
        resolve = self._resolve if base is None else partial(self._resolve_relative_to, base)
        return rewrite_links(resource, resolve, self.links)

    def _resolve_relative_to(self, base: str, ref: str) -> str | None:
        """bundle.html, Resolving references in Bundles: "if the reference has the format [type]/[id], and
        the fullUrl for the bundle entry containing the resource is a RESTful one ... extract the [base]
        from the fullUrl, and append the reference ([type]/[id]) to it, then try to resolve within the
        bundle". Not found there, it stays as sent: a reference to this server's own resource."""
        unversioned, version = _split_version(ref)
        if _RELATIVE_REFERENCE.fullmatch(unversioned):
            target = self.references.get(f"{base}/{unversioned}")
            if target is not None:
                return self._versioned(target, version)
        return self._resolve(ref)

    def _resolve(self, ref: str) -> str | None:
        target = self.references.get(ref)
        if target is not None:
            return target
        unversioned, version = _split_version(ref)
        if version is not None:
            # bundle.html, Resolving references: "If the reference is version specific (either relative or
            # absolute), then remove the version from the URL before matching fullUrl".
            target = self.references.get(unversioned)
            if target is not None:
                return self._versioned(target, version)
        if "?" in ref and not ref.startswith("#") and self.resolves_conditional:
            return self.conditional(ref)
        if is_placeholder(ref):
            sibling = self.batch_placeholders.get(ref)
            if sibling is not None:  # http.html#brules: such references are non-conformant in a batch
                raise bad_request(f"Reference '{ref}' is the fullUrl of entry {sibling} of this batch; batch "
                                  f"entries are processed on their own and cannot reference each other (a "
                                  f"transaction resolves such references)")
            raise FHIRError.of(404, "not-found", f"Reference '{ref}' names no fullUrl in this Bundle")
        return None

    def _versioned(self, target: str, version: str | None) -> str:
        """A version-specific reference to an entry's resource, rewritten: a resource the transaction creates
        exists in version 1 only, one an ifNoneExist matched (and no entry writes) in its current version;
        an update keeps its id, and the version stays the one referenced."""
        if version is None:
            return target
        writer = self.written.get(target)
        if writer is not None and writer.method == "POST":
            return f"{target}/_history/1"
        if writer is None and target in self.matched:
            resource_type, resource_id = target.split("/", 1)
            current = repo.current(self.conn, resource_type, resource_id)
            if current is not None:
                return f"{target}/_history/{current.version_id}"
        return f"{target}/_history/{version}"

    def conditional(self, ref: str) -> str:
        cached = self._conditional.get(ref)
        if cached is not None:
            return cached
        # http.html#trules: "The search URI is relative to the server's [base] path, and always starts with
        # a resource type": a search on another server would point the reference at an unrelated resource.
        local = on_this_server(ref, self.base_url)
        if local is None:
            raise bad_request(f"Reference '{ref}' is a search on another server; a conditional reference is "
                              f"[type]?[search parameters], relative to this server's base", code="invalid")
        resource_type, _, query = local.partition("?")
        if resource_type not in REST_TYPES:
            raise bad_request(f"Conditional reference '{ref}' names no known resource type", code="invalid")
        matches = self.find(resource_type, parse_qsl(query, keep_blank_values=True))
        if len(matches) != 1:
            what = "no" if not matches else str(len(matches))
            raise FHIRError.of(412 if matches else 404, "not-found" if not matches else "multiple-matches",
                               f"Conditional reference '{ref}' matches {what} resources; it must match exactly one")
        out = self._conditional[ref] = f"{resource_type}/{matches[0]}"
        return out


class _LostConditionalCreate(FHIRError):
    """A concurrent request created a resource matching the criteria an entry creates under (its
    ifNoneExist, or a conditional update's) and committed after the entry searched them."""


def _lost_race(resource_type: str, winner: str | None, where: str) -> FHIRError:
    which = f" ({resource_type}/{winner})" if winner else ""
    return _LostConditionalCreate.of(
        409, "conflict", f"A concurrent request created a {resource_type} matching the entry's criteria"
        f"{which} while this Bundle was processed; retry it, and the entry will act on that resource", where)


def _result(result: WriteResult) -> EntryResult:
    return EntryResult(result.status, result.version, issues=list(result.issues))


def _failed(index: int, exc: FHIRError, raw_entry: object = None) -> EntryResult:
    """A batch entry's error, pointing into the Bundle as a transaction's does."""
    failure = entry_error(index, exc, raw_entry)
    return EntryResult(failure.status, issues=failure.issues)


def _search_across_types(index: int, method: str, segments: list[str], url: str, query: str,
                         params: list[tuple[str, str]]) -> Entry | None:
    """A system search (`?params`, as GET [base]?params) or a Patient compartment search
    (`Patient/[id]/[type]` or `Patient/[id]/*`) entry, as their REST endpoints (api/search_routes.py)."""
    if not segments and url.startswith("?"):
        return Entry(index, method, "", query=query, criteria=params)
    if len(segments) == 3 and segments[0] == "Patient" and (segments[2] == "*" or segments[2] in REST_TYPES):
        if not _ID.fullmatch(segments[1]):
            raise bad_request(f"'{segments[1]}' is not a valid id", "request.url")
        return Entry(index, method, "" if segments[2] == "*" else segments[2], query=query, criteria=params,
                     compartment=("Patient", segments[1]))
    return None


def _placeholder_entries(raw_entries: list) -> dict[str, int]:
    """The placeholder fullUrls of a batch's entries (parsed or not), each with its entry's index."""
    out: dict[str, int] = {}
    for i, raw in enumerate(raw_entries):
        full_url = raw.get("fullUrl") if isinstance(raw, dict) else None
        if isinstance(full_url, str) and is_placeholder(full_url):
            out.setdefault(full_url, i)
    return out


# --- parsing entries -------------------------------------------------------------------------------

def parse_entry(index: int, raw: dict, base_url: str) -> Entry:
    """An entry whose own elements passed envelope_errors (an object; request.method in http-verb,
    request.url, fullUrl and the preconditions well-typed), read as the interaction it asks for."""
    request = raw.get("request")
    if request is None:  # bdl-3, which the envelope check leaves to this
        raise bad_request("The entry has no request", "request", code="required")
    method = request["method"]
    # request.url is relative to the base the Bundle was posted to (bundle.html): another server's
    # Patient/1 is not ours to read, change or delete.
    url = on_this_server(request["url"], base_url)
    if url is None:
        raise bad_request(f"request.url '{request['url']}' is not on this server: give it relative to {base_url}",
                          "request.url")
    path, _, query = url.partition("?")
    segments = [s for s in path.split("/") if s]
    if method == "POST" and segments[-1:] == ["_search"] and len(segments) <= 2:
        # POST [type]/_search is the search interaction (http.html#search); an entry has no form body, so
        # its criteria are those of request.url, and it is run as the GET of the same search.
        if raw.get("resource") is not None:
            raise bad_request("A _search entry takes its criteria from request.url, not from a resource",
                              "resource")
        method, segments = "GET", segments[:-1]
        url = "/".join(segments) + (f"?{query}" if query else "")
    params = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k not in NON_PARAMS]
    if segments:
        other = parse_other(method, segments, params, raw.get("resource"), base_url)
        if other is not None:
            return Entry(index, method, other.resource_type or "", other.resource_id, query=query, other=other,
                         full_url=raw.get("fullUrl"))
    if method in ("GET", "HEAD"):
        search = _search_across_types(index, method, segments, url, query, params)
        if search is not None:
            return search
    if not segments or segments[0] not in REST_TYPES:
        raise FHIRError.of(404, "not-supported", f"request.url '{url}' names no known resource type", "request.url")
    if method not in ("GET", "HEAD") and not guard.writable(segments[0]):  # the 405 the REST call gets,
        raise _located(guard.audit_write_refused(), "request.method")  # before its resource is validated
    entry = Entry(index, method, segments[0], query=query)
    entry.full_url = raw.get("fullUrl")
    if len(segments) >= 2:
        if not _ID.fullmatch(segments[1]):
            raise bad_request(f"'{segments[1]}' is not a valid id", "request.url")
        entry.resource_id = segments[1]
    if len(segments) == 4 and segments[2] == "_history" and method in ("GET", "HEAD"):
        entry.version = segments[3]
    elif len(segments) > 2:
        raise bad_request(f"request.url '{url}' is not supported in a Bundle", "request.url")
    if query:
        entry.criteria = params
    if method in ("GET", "HEAD", "PUT"):
        entry.if_none_match = _precondition(request, "ifNoneMatch", rs.etag_versions)
    if method in ("GET", "HEAD"):
        entry.if_modified_since = _precondition(request, "ifModifiedSince", _instant)
        return entry
    resource = raw.get("resource")
    if method == "POST":
        if entry.resource_id is not None or query:
            raise bad_request("POST entries name only the type in request.url", "request.url")
        ine = request.get("ifNoneExist")
        if isinstance(ine, str) and ine.strip():
            try:  # parsed as the If-None-Exist header is: a leading "[type]?" must name the entry's type
                entry.if_none_exist = rs.parse_criteria(ine.strip(), entry.resource_type)
            except FHIRError as exc:
                raise _located(exc, "request.ifNoneExist") from None
    elif entry.resource_id is None and not entry.criteria:
        raise bad_request(f"{method} entries need an id or search criteria in request.url", "request.url")
    if method != "DELETE" and entry.resource_id is not None and query:
        raise bad_request("request.url has both an id and criteria", "request.url")
    entry.if_match = _precondition(request, "ifMatch", rs.if_match_versions)
    if method == "DELETE":
        return entry
    if method == "PATCH":
        entry.patch_body, entry.patch_type = _patch_of(resource)
        return entry
    if not isinstance(resource, dict):
        raise bad_request(f"A {method} entry must carry a resource", "resource", code="required")
    if resource.get("resourceType") != entry.resource_type:
        raise bad_request(f"resource is a {resource.get('resourceType')!r}, request.url names "
                          f"{entry.resource_type}", "resource.resourceType")
    if method == "PUT" and entry.resource_id is not None:
        body_id = resource.get("id")
        if body_id is None:
            raise bad_request("The resource in an update must carry its id", f"{entry.resource_type}.id",
                              code="required")
        if body_id != entry.resource_id:
            raise bad_request(f"Resource id '{body_id}' does not match the request.url id "
                              f"'{entry.resource_id}'", f"{entry.resource_type}.id")
    entry.resource = rs.without_client_id(resource) if method == "POST" else resource  # a create's id is ours
    return entry


def _precondition(request: dict, element: str, parse: Callable[[str], T]) -> T | None:
    """request.ifMatch, ifNoneMatch…, read as the HTTP header of the same name; errors point at it."""
    value = request.get(element)
    if value is None:
        return None
    try:
        return parse(str(value))
    except FHIRError as exc:
        raise _located(exc, f"request.{element}") from None


def _instant(value: str) -> datetime:
    """request.ifModifiedSince: a FHIR instant, to the second or finer, with its time zone."""
    when = parse_instant(value)
    if when is None:
        raise bad_request(f"'{value}' is not an instant such as 2024-01-31T09:30:00Z")
    return when


def _patch_of(resource: object) -> tuple[Any, str]:
    if isinstance(resource, dict) and resource.get("resourceType") == "Parameters":
        return resource, "application/fhir+json"
    if isinstance(resource, dict) and resource.get("resourceType") == "Binary":
        try:
            data = base64.b64decode(resource.get("data") or "", validate=True)
        except (binascii.Error, ValueError):
            raise bad_request("The Binary patch has invalid base64 data", "resource.data") from None
        return parse_json(data), JSON_PATCH
    raise bad_request("A PATCH entry carries a Parameters (FHIRPath Patch) or a Binary (JSON Patch) resource",
                      "resource")


# A relative reference, [type]/[id] (references.html#regex)
_RELATIVE_REFERENCE = re.compile(r"[A-Za-z]+/[A-Za-z0-9\-.]{1,64}")
_VERSION_SUFFIX = re.compile(r"/_history/([A-Za-z0-9\-.]{1,64})$")


def _split_version(ref: str) -> tuple[str, str | None]:
    """(the reference without its `/_history/[vid]`, the vid), or (ref, None) for a reference to no version."""
    found = _VERSION_SUFFIX.search(ref)
    return (ref, None) if found is None else (ref[:found.start()], found.group(1))


def restful_base(full_url: str | None) -> str | None:
    """The [base] of a RESTful fullUrl ([base]/[type]/[id]); None for a urn:uuid: or urn:oid: one."""
    parts = restful_parts(full_url)
    return parts[0] if parts is not None else None


def _link_targets(entries: list[Entry], full_urls: dict[str, str], base_url: str) -> LinkTargets:
    """The fullUrls whose matches in uri-typed elements and narrative links are replaced ("Servers SHALL
    replace all matching links in the bundle", http.html#trules), each with its Type/id: every placeholder,
    and absolute fullUrls but two kinds, which stay as sent because they still name the resource after the
    transaction. One is the server's own URL of the resource ([base]/Type/id of a PUT): already a working
    link, and absolute, as a narrative link must be. The other is the entry resource's canonical `url`
    (examples often use it as fullUrl): values equal to it, the resource's own `url` and every
    Coding.system or canonical naming it, are canonical references, which a Type/id would break."""
    if all(map(is_placeholder, full_urls)):  # the common case: urn:uuid fullUrls only
        return LinkTargets(full_urls)
    targets = {}
    for entry in entries:
        url = entry.full_url
        if url is None or url not in full_urls:
            continue
        target = full_urls[url]
        if not is_placeholder(url) and (url == f"{base_url}/{target}" or (entry.resource or {}).get("url") == url):
            continue
        targets[url] = target
    return LinkTargets(targets)


def _check_unique_full_urls(entries: list[Entry]) -> None:
    """Two entries written under one fullUrl would make references to it ambiguous. bdl-7
    (bundle_invariant_issues) already refuses a fullUrl repeated with the same meta.versionId; the
    invariant allows differing versions, which a transaction still cannot write both of."""
    full_urls: dict[str, int] = {}
    for e in entries:
        if e.full_url and e.method in ("POST", "PUT") and e.other is None:
            if e.full_url in full_urls:
                raise entry_error(e.index, bad_request(
                    f"fullUrl '{e.full_url}' is also used by entry {full_urls[e.full_url]}", "fullUrl"))
            full_urls[e.full_url] = e.index


class _Claims:
    """Which entry acts on which resource. http.html#trules: "If any resource identities (including
    resolved identities from conditional update/delete) overlap in steps 1-3, then the transaction SHALL
    fail": the rule that makes the outcome independent of the order entries are processed in. Entries
    claim the ids they name and, for criteria, every id the criteria match; GETs (step 4) claim nothing."""

    def __init__(self) -> None:
        self._owners: dict[tuple[str, str], int] = {}

    def claim(self, entry: Entry, resource_ids: Iterable[str]) -> None:
        keys = [(entry.resource_type, i) for i in resource_ids]
        for key in keys:  # all checked before any is recorded: a refused batch entry claims nothing
            owner = self._owners.get(key, entry.index)
            if owner != entry.index:
                raise _overlap(key, owner, entry.index)
        for key in keys:
            self._owners[key] = entry.index


def _overlap(key: tuple[str, str], one: int, other: int) -> FHIRError:
    """The error names the later entry of the two in the Bundle, whichever was processed first."""
    first, later = sorted((one, other))
    resource_type, resource_id = key
    return entry_error(later, bad_request(
        f"{resource_type}/{resource_id} is also the target of entry {first}; entries must act on "
        f"different resources, and a conditional URL counts as every resource it matches", "request.url"))


# --- the response Bundle ---------------------------------------------------------------------------

def _format_instant(v: StoredVersion) -> str:
    return rs.format_instant(v.last_updated)


def _response_bundle(kind: str, results: list[EntryResult], base_url: str, prefer: str) -> bytes:
    head = {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": kind,
            "link": [{"relation": "self", "url": base_url}]}
    entries: list[tuple[dict, bytes | None]] = []
    for r in results:
        response: dict = {"status": _STATUS_TEXT.get(r.status, str(r.status))}
        content = r.content
        entry: dict = {}
        if r.version is not None:
            v = r.version
            if r.location:
                response["location"] = f"{v.resource_type}/{v.id}/_history/{v.version_id}"
            response["etag"] = f'W/"{v.version_id}"'
            response["lastModified"] = _format_instant(v)
            entry["fullUrl"] = f"{base_url}/{v.resource_type}/{v.id}"
            if content is None and r.resource:
                content = v.content
        if prefer == "OperationOutcome" or r.status >= 400 or any(i.is_error for i in r.issues):
            response["outcome"] = operation_outcome(r.issues)
        # Prefer: return= is about the answer to a write (http.html#ops); it never trims a read
        if prefer in ("minimal", "OperationOutcome") and r.version is not None and r.location:
            content = None
        entry["response"] = response
        entries.append((entry, content))
    return _splice(head, entries)


def _splice(head: dict, entries: list[tuple[dict, bytes | None]]) -> bytes:
    # entry = {fullUrl?, resource?, response}: splice the stored bytes between them in FHIR's order
    parts = []
    for entry, content in entries:
        response = entry.pop("response")
        encoded = dump_json(entry)
        if content is not None:
            encoded = (encoded[:-1] + (b"," if len(encoded) > 2 else b"") + b'"resource":' + content + b"}")
        encoded = encoded[:-1] + (b"," if len(encoded) > 2 else b"") + b'"response":' + dump_json(response) + b"}"
        parts.append(encoded)
    if not parts:
        return dump_json(head)
    return dump_json(head)[:-1] + b',"entry":[' + b",".join(parts) + b"]}"
