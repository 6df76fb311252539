"""Batch and transaction entries that are neither CRUD nor search: history (instance, type, system),
`metadata` and operations (http.html#transaction: entries "may be a mix of other interactions defined
on this page … or using the operations framework").

Each such entry is answered as the standalone request would be, by the same service call the standalone
route makes: HistoryService.history (rest_routes), the CapabilityStatement (metadata_routes),
ValidateOperation (validate_routes), search.everything (search_routes), IptService.progress and
IptService.apply (ipt_routes). The entry gets that call's status and body (entry.resource) or its error
(entry.response.outcome, pointing into the Bundle as every entry error does); none of these standalone
answers carries an ETag, Location or Last-Modified, so neither does the entry. Requests no route serves
get the 404 the standalone request gets ("No such endpoint"), a method the operation's route does not
take its 405, as the HTTP layer (api/errors.py) answers them. One difference remains: a POST
$everything entry takes its parameters from a Parameters resource (an entry cannot carry the form body
the route reads).

Why direct calls and not an internal ASGI sub-request through the app: a transaction is one unit of
work, and its read-only entries run last, on its connection, so they see its writes; a sub-request
would run on another connection (on PostgreSQL it would not see them, on SQLite it would read around
the held writer) and outside the Bundle's error handling and audit collector. Services that open
their own read (`db.read()`) are handed `InUnitOfWork`, a view of the Database whose reads are the
transaction's connection. In a batch every entry is its own unit of work, as a standalone request is.

Security, as for the standalone request: history is checked by HistoryService (scopes, compartment,
entries left out) plus, at system level, the coarse "some search scope" check of api/security_deps.py;
operations get the same operation check as their routes (security/guard.py `require_operation`: search
scope on the type for type-level, read scope and the instance's compartment for instance-level) and
then the service's own checks. `metadata` is public, as GET /fhir/metadata is, and not audited.
Audit: while an entry runs, the request's audit collector carries the entry's interaction (so a
history entry is recorded as history-instance, not as a search inside a batch); an operation that
notes no access of its own is recorded as the standalone request would be (interaction `operation`,
the instance, the patient when it is a Patient).

Operations that write: `$apply` with store=true writes its own transaction. In a batch it runs as that
entry's unit of work; in a transaction it cannot run inside the outer unit of work and is refused (400)
rather than run outside it. Bulk data kick-offs and status endpoints ($export, $import, …) are
asynchronous (202 + polling, `Prefer: respond-async`, which an entry cannot carry): refused with 400.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterator
from urllib.parse import urlencode, urlsplit

from sqlalchemy.engine import Connection

from ipt_fhir.fhir.jsonio import dump_json
from ipt_fhir.fhir.outcome import FHIRError, bad_request, method_not_allowed, operation_outcome
from ipt_fhir.fhir.parameters import primitive_parameters
from ipt_fhir.security import audit, context, guard
from ipt_fhir.store.database import Database, fetch_one

# Operations served at /fhir: (level, type or "*", name) -> the methods their routes take.
_OPERATIONS: dict[tuple[str, str, str], tuple[str, ...]] = {
    ("type", "*", "validate"): ("POST",),  # validate_routes
    ("instance", "*", "validate"): ("GET", "POST"),
    ("instance", "Patient", "everything"): ("GET", "POST"),  # search_routes
    ("instance", "CarePlan", "ipt-progress"): ("GET", "POST"),  # ipt_routes (affectsState false: both)
    ("instance", "PlanDefinition", "apply"): ("GET", "POST"),
    ("system", "", "meta"): ("GET", "POST"),  # meta_routes
    ("type", "*", "meta"): ("GET", "POST"),
    ("instance", "*", "meta"): ("GET", "POST"),
    ("instance", "*", "meta-add"): ("POST",),
    ("instance", "*", "meta-delete"): ("POST",),
}
# Operations also served on a version, [type]/[id]/_history/[vid]/$name (meta_routes)
_VERSION_OPERATIONS = frozenset({"meta", "meta-add", "meta-delete"})
_BULK = frozenset({"export", "import", "export-poll-status", "import-poll-status", "export-file", "import-file"})
NON_PARAMS = ("_format", "_pretty")  # formatting of the answer, not parameters of the interaction


@dataclass
class OtherRequest:
    """A history, metadata or operation entry, parsed."""

    kind: str  # "history" | "metadata" | "operation"
    method: str
    resource_type: str | None = None
    resource_id: str | None = None
    name: str | None = None  # the operation, without "$"
    params: list[tuple[str, str]] = field(default_factory=list)
    body: object = None
    version_id: str | None = None  # an operation on a version: [type]/[id]/_history/[vid]/$name
    parsed: Any = None  # $apply: the ApplyRequest
    writes: bool = False

    @property
    def interaction(self) -> str:
        if self.kind == "history":
            return "history-instance" if self.resource_id else "history-type" if self.resource_type else \
                "history-system"
        return self.kind if self.kind == "metadata" else "operation"


def _endpoint_error(status: int, method: str, base_path: str, path: str, allowed: tuple[str, ...] = ()) -> FHIRError:
    """The HTTP layer's answer to a request no route serves (api/errors.py)."""
    full = f"{base_path}/{path}"
    if status == 405:
        return method_not_allowed(method, full, allowed, "request.method")
    return FHIRError.of(404, "not-found", f"No such endpoint: {method} {full}", "request.url")


def parse_other(method: str, segments: list[str], params: list[tuple[str, str]], resource: object,
                base_url: str) -> OtherRequest | None:
    """The entry's request as a history, metadata or operation request; None when it is none of those
    (read, vread, search, create, update, patch, delete: the caller's). Unknown operations and methods
    a route does not take raise the standalone 404 / 405."""
    path = "/".join(segments)
    base_path = urlsplit(base_url).path.rstrip("/")
    if segments == ["metadata"]:
        if method not in ("GET", "HEAD"):
            raise _endpoint_error(405, method, base_path, path, ("GET", "HEAD"))
        return OtherRequest("metadata", method, params=params)
    if segments[-1] == "_history" and len(segments) <= 3:
        if method not in ("GET", "HEAD"):
            raise _endpoint_error(405, method, base_path, path, ("GET", "HEAD"))
        resource_type = segments[0] if len(segments) > 1 else None
        resource_id = segments[1] if len(segments) > 2 else None
        return OtherRequest("history", method, resource_type, resource_id, params=params)
    dollar = [i for i, s in enumerate(segments) if s.startswith("$")]
    if not dollar:
        return None
    name = segments[dollar[0]][1:]
    if name in _BULK:
        raise bad_request(f"${name} is an asynchronous bulk data request (202 Accepted and polling, with "
                          f"Prefer: respond-async, which a Bundle entry cannot carry): send it on its own",
                          "request.url", code="not-supported")
    version_id = None
    if len(segments) == 5 and segments[2] == "_history" and dollar[0] == 4 and name in _VERSION_OPERATIONS:
        version_id, segments = segments[3], [segments[0], segments[1], segments[4]]
    elif dollar[0] != len(segments) - 1 or len(segments) > 3:
        raise _endpoint_error(404, method, base_path, path)
    level = {1: "system", 2: "type", 3: "instance"}[len(segments)]
    resource_type = segments[0] if len(segments) > 1 else None
    resource_id = segments[1] if len(segments) == 3 else None
    methods = _OPERATIONS.get((level, resource_type or "", name)) or _OPERATIONS.get((level, "*", name))
    if methods is None:
        raise _endpoint_error(404, method, base_path, path)
    if method not in methods:
        raise _endpoint_error(405, method, base_path, path, methods)
    other = OtherRequest("operation", method, resource_type, resource_id, name, params, resource, version_id)
    if name == "apply":
        from ipt_fhir.domain.apply import parse_apply_parameters

        if method == "POST":
            other.parsed = parse_apply_parameters(resource)  # type: ignore[arg-type]
        else:
            other.parsed = parse_apply_parameters(params)
            if other.parsed.store:
                raise bad_request("store=true changes the server: use POST", "store", code="value")
        other.writes = bool(other.parsed.store)
    return other


class InUnitOfWork:
    """`db` whose reads (and writes) are the caller's open unit of work `conn`: services that open their
    own `db.read()` run inside a transaction with it and see its writes."""

    def __init__(self, db: Database, conn: Connection) -> None:
        self._db = db
        self._conn = conn

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        yield self._conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        yield self._conn

    def fetch_one(self, sql: str, params: tuple) -> tuple | None:
        return fetch_one(self._conn, sql, params)


@contextmanager
def audited_as(interaction: str, other: OtherRequest | None = None) -> Iterator[None]:
    """Run an entry with the audit collector's interaction set to the one its standalone request has (a
    batch's own is `batch`); afterwards, an operation (`other`) that noted no access is recorded as its
    standalone request is (security/audit.py `_request_access`)."""
    c = audit.collector()
    if c is None:
        yield
        return
    saved, noted = c.interaction, len(c.reads)
    c.interaction = interaction
    try:
        yield
    finally:
        c.interaction = saved
    if other is not None and other.kind == "operation" and len(c.reads) == noted:
        access = audit.Access("operation")
        if other.resource_type and other.resource_id:
            access.resources.append((other.resource_type, other.resource_id, None))
            if other.resource_type == "Patient":
                access.patients.add(other.resource_id)
        c.reads.append(access)


# (bundle, base_url, prefer) -> transaction-response bytes: $apply store=true in a batch
TransactionRunner = Callable[[dict, str, str], bytes]
_LOADED = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+00:00")


class EntryInteractions:
    """The services the standalone routes call, for Bundle entries. `capability(base_url, modes)` is
    the JSON GET /fhir/metadata?mode=… answers with (the API layer builds it)."""

    def __init__(self, db: Database, *, settings: Any = None, ipt: Any = None,
                 capability: Callable[[str, list[str]], bytes] | None = None) -> None:
        self.db = db
        self._settings = settings
        self._ipt = ipt
        self._capability = capability

    @property
    def settings(self) -> Any:
        if self._settings is None:
            from ipt_fhir.settings import get_settings

            self._settings = get_settings()
        return self._settings

    def ipt(self, db: Any) -> Any:
        from ipt_fhir.services.ipt import IptService

        canonical = self._ipt.canonical_base if self._ipt is not None else self.settings.canonical_base
        return IptService(db, canonical)

    def capability(self, base_url: str, modes: list[str]) -> bytes:
        if self._capability is not None:
            return self._capability(base_url, modes)
        from ipt_fhir.services.capability import capability_statement, metadata_mode
        from ipt_fhir.services.terminology_capability import terminology_capabilities

        if metadata_mode(modes) == "terminology":
            return dump_json(terminology_capabilities(base_url, released=_LOADED))
        return dump_json(capability_statement(base_url, released=_LOADED))

    def run(self, other: OtherRequest, *, base_url: str, conn: Connection | None = None,
            transaction: TransactionRunner | None = None, prefer: str = "representation") -> tuple[int, bytes | None]:
        """(status, body) of the entry; its error raised as FHIRError. With `conn`, inside that unit of work."""
        db: Any = self.db if conn is None else InUnitOfWork(self.db, conn)
        if other.kind == "metadata":
            body = self.capability(base_url, [value for name, value in other.params if name == "mode"])
        else:
            with audited_as(other.interaction, other):
                body = self._service_call(other, db, base_url, transaction, prefer)
        return 200, (None if other.method == "HEAD" else body)

    def _service_call(self, other: OtherRequest, db: Any, base_url: str, transaction: TransactionRunner | None,
                      prefer: str) -> bytes:
        if other.kind == "history":
            from ipt_fhir.services.history import HistoryService

            if other.resource_type is None and guard.is_restricted() and \
                    not context.current().scopes.any_for("search"):
                raise guard.forbidden("The access token has no search scope")  # security_deps, history-system
            return HistoryService(db, self.settings).history(
                other.params, base_url=base_url, resource_type=other.resource_type, resource_id=other.resource_id)
        guard.require_operation(other.resource_type, other.resource_id, db)
        name, resource_type, resource_id = other.name, other.resource_type, other.resource_id
        if name in _VERSION_OPERATIONS:  # $meta, $meta-add, $meta-delete: services/meta_operations.py
            from ipt_fhir.services.meta_operations import MetaOperations, meta_parameters, no_parameters

            operations = MetaOperations(db)
            if name == "meta-add":
                meta = operations.add(resource_type, resource_id, other.body, other.version_id)
            elif name == "meta-delete":
                meta = operations.delete(resource_type, resource_id, other.body, other.version_id)
            else:
                no_parameters(other.body)
                meta = operations.instance(resource_type, resource_id, other.version_id) if resource_id \
                    else operations.in_use(resource_type)
            return dump_json(meta_parameters(meta))
        assert resource_type is not None
        if name == "validate":
            from ipt_fhir.services.validate_operation import ValidateOperation, ValidateRequest, parse_validate_body

            query = dict(other.params)
            if other.method == "GET":
                parsed = ValidateRequest(None, query.get("mode"), query.get("profile"))
            else:
                parsed = parse_validate_body(other.body, query)
            return dump_json(operation_outcome(ValidateOperation(db).validate(resource_type, parsed, resource_id)))
        assert resource_id is not None
        if name == "everything":
            from ipt_fhir.services import search as search_service

            params = other.params + _parameters_of(other.body)
            request_url = f"{base_url}/Patient/{resource_id}/$everything" + (f"?{urlencode(params)}" if params else "")
            return search_service.everything(db, resource_id, params, base_url=base_url, request_url=request_url)
        if name == "ipt-progress":
            return dump_json(self.ipt(db).progress(resource_id))
        if name == "apply":
            bundle = self.ipt(db).apply(resource_id, other.parsed)
            if not other.parsed.store:
                return dump_json(bundle)
            if transaction is None:  # a transaction entry: refused when parsed (bundle_processing)
                raise bad_request("$apply with store=true cannot run inside a transaction", "request.url")
            return transaction(bundle, base_url, prefer)
        raise FHIRError.of(404, "not-found", f"${name} is not supported", "request.url")


def _parameters_of(body: object) -> list[tuple[str, str]]:
    """A POST entry's Parameters as (name, value) pairs, checked as for POST over REST; a GET entry has none."""
    return [] if body is None else primitive_parameters(body)
