"""The CPU-bound half of $import: one NDJSON line → a first version ready to store, or a line error.

Parse, validate (the same gate as every write), resolve conditional references, render the stored JSON
of version 1 and extract its search index rows. Everything here is pure (no database, no shared state),
so chunks of lines can be prepared in worker processes while the importer writes the previous batch:
that is where most of an import's CPU goes (parsing, validation and index extraction). The results are
compact tuples, cheap to send back between processes.

Conditional references (`Practitioner?identifier=sys|val`) need the files' identifiers and possibly the
database, which only the importer has: it finds a chunk's conditional references with a regular
expression on the raw lines, resolves them, and hands the answers along with the chunk. A reference the
expression missed (JSON escapes in it) makes the line `Unresolved`; the importer then prepares that line
itself, with its own resolver, through the same function.
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import re
import threading
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from typing import Callable, Iterator, NamedTuple

from ipt_fhir.fhir.jsonio import dump_json, parse_json
from ipt_fhir.fhir.outcome import FHIRError, Issue, bad_request
from ipt_fhir.fhir.resource_types import REST_TYPES
from ipt_fhir.services import resources as rs
from ipt_fhir.services.ipt import conformance
from ipt_fhir.services.validation import validate_for_write
from ipt_fhir.store.search_index import table_rows

# (table kind → full index rows (resource_type, resource_id, param, *values), duplicates dropped)
IndexRows = dict[str, list[tuple]]


class Prepared(NamedTuple):
    """A valid line as version 1: `content` is the stored JSON with meta.versionId 1 and lastUpdated `now`.
    `index` is None when the resource was said to exist already: a stored resource's index rows are
    only needed for a new version, which the writer renders itself (or the line is unchanged)."""

    file: str
    line: int
    resource_type: str
    id: str
    content: bytes  # its meta is restamped when the line is written (bulk_import._restamped)
    index: IndexRows | None


class Failed(NamedTuple):
    file: str
    line: int
    resource_type: str
    status: int
    issues: list[Issue]


class Unresolved(NamedTuple):
    """The line holds a conditional reference that was not resolved beforehand: the caller prepares it."""

    file: str
    line: int
    raw: bytes


class _NotResolvedHere(Exception):
    pass


Resolver = Callable[[str], str | None]  # a conditional reference → "Type/id", None when it matches 0 or >1

# A "reference" property whose string value holds a '?' and no escapes (see the module docstring).
_CONDITIONAL = re.compile(rb'"reference"\s*:\s*"([^"\\?]*\?[^"\\]*)"')


# The first "resourceType" and "id" of a line: the resource's own in every export seen, but only a hint
# (a contained resource or an element id may come first), used to ask which resources already exist.
_TYPE_HINT = re.compile(rb'"resourceType"\s*:\s*"([A-Za-z]{1,64})"')
_ID_HINT = re.compile(rb'"id"\s*:\s*"([A-Za-z0-9\-.]{1,64})"')


def key_hint(raw: bytes, wanted: Callable[[str], bool] = lambda resource_type: True) -> tuple[str, str] | None:
    """(type, id) hint of a line, if its type is `wanted` (the id search is the costlier half)."""
    t = _TYPE_HINT.search(raw)
    if t is None or not wanted(resource_type := t.group(1).decode()):
        return None
    i = _ID_HINT.search(raw)
    return (resource_type, i.group(1).decode()) if i else None


def conditional_references(raw_lines: list[bytes]) -> set[str]:
    """The conditional references written plainly in these lines ('#…' local references excluded)."""
    found: set[str] = set()
    for raw in raw_lines:
        if b"?" in raw:
            found.update(m.decode("utf-8", "replace") for m in _CONDITIONAL.findall(raw))
    return {ref for ref in found if not ref.startswith("#")}


def prepare_line(file: str, number: int, raw: bytes, resolve: Resolver, now: datetime,
                 existing: frozenset[tuple[str, str]] = frozenset()) -> Prepared | Failed:
    """Every check a line passes before it is written, in the order and with the errors the importer
    has always reported. Index rows are left out for the `existing` resources (see Prepared)."""
    resource_type = "?"
    try:
        resource = parse_json(raw)
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            raise bad_request("The line is not a FHIR resource", code="structure")
        resource_type = resource["resourceType"]
        if resource_type not in REST_TYPES:
            raise bad_request(f"Unknown resource type '{resource_type}'", code="not-supported")
        rid = resource.get("id")
        if not isinstance(rid, str):
            raise bad_request("Imported resources keep their ids: the line has no id", f"{resource_type}.id",
                              code="required")
        rs._check_client_id(rid, resource_type)
        validate_for_write(resource, resource_type, conditional_references=True)
        _resolve_in_place(resource, resolve)
        doc = rs.with_server_meta(resource, rid, 1, now)
        rows = None if (resource_type, rid) in existing else table_rows(resource_type, rid, doc)
        return Prepared(file, number, resource_type, rid, dump_json(doc), rows)
    except FHIRError as exc:
        return Failed(file, number, resource_type, exc.status, exc.issues)


def _resolve_in_place(value: dict | list, resolve: Resolver) -> None:
    """Replace every conditional `reference` value by its target, at any depth. In place: the parsed
    line is ours alone, and copying every object (as a Bundle's rewrite must) costs twice the time."""
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for k, v in items:
        if k == "reference" and isinstance(v, str):
            if "?" in v and not v.startswith("#"):
                target = resolve(v)
                if target is None:
                    raise FHIRError.of(422, "not-found", f"Conditional reference '{v}' matches no resource or "
                                       "several; it must match exactly one")
                value[k] = target
        elif isinstance(v, (dict, list)):
            _resolve_in_place(v, resolve)


def prepare_chunk(lines: list[tuple[str, int, bytes]], resolved: dict[str, str | None], now: datetime,
                  existing: frozenset[tuple[str, str]] = frozenset()) -> list[Prepared | Failed | Unresolved]:
    """A chunk of lines with the answers for their conditional references (runs in a worker process)."""
    def resolve(ref: str) -> str | None:
        try:
            return resolved[ref]
        except KeyError:
            raise _NotResolvedHere from None

    out: list[Prepared | Failed | Unresolved] = []
    for file, number, raw in lines:
        try:
            out.append(prepare_line(file, number, raw, resolve, now, existing))
        except _NotResolvedHere:
            out.append(Unresolved(file, number, raw))
    return out


# --- the worker processes ---------------------------------------------------------------------------
# One pool per process, shared by its imports and kept between them (workers import the server's modules
# and compile validators once, ~2 s), shut down once no import has used it for IDLE_SECONDS (an idle
# worker holds ~100 MB). Spawned rather than forked: the server runs imports in a thread beside others,
# and a fork would copy whatever locks those threads hold (a validator compiling, logging).

IDLE_SECONDS = 120.0

_pool: ProcessPoolExecutor | None = None
_pool_base: str | None = None  # the IPT canonical base its workers registered (see _start_worker)
_users = 0
_idle_timer: threading.Timer | None = None
_pool_lock = threading.Lock()


@contextmanager
def workers(count: int) -> Iterator[ProcessPoolExecutor]:
    """The shared pool for the duration of one import. Its size is `count` unless another import is
    using it (a worker count changes how fast, never what is stored)."""
    global _pool, _pool_base, _users, _idle_timer
    active = conformance.active()
    base = active.canonical_base if active is not None else None
    with _pool_lock:
        if _idle_timer is not None:
            _idle_timer.cancel()
            _idle_timer = None
        if _pool is not None and _users == 0 and (_pool._max_workers != count or _pool_base != base):
            _pool.shutdown(wait=False, cancel_futures=True)
            _pool = None
        if _pool is None:
            _pool = ProcessPoolExecutor(count, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_start_worker, initargs=(base,))
            _pool_base = base
        _users += 1
        executor = _pool
    try:
        yield executor
    finally:
        with _pool_lock:
            _users -= 1
            if _users == 0 and _pool is not None:
                _idle_timer = threading.Timer(IDLE_SECONDS, _shut_down_if_idle)
                _idle_timer.daemon = True
                _idle_timer.start()


def _shut_down_if_idle() -> None:
    global _pool
    with _pool_lock:
        if _users == 0 and _pool is not None:
            _pool.shutdown(wait=False, cancel_futures=True)
            _pool = None


def _start_worker(ipt_canonical_base: str | None) -> None:
    """A spawned worker starts with none of the importing process's registrations: the IPT profiles,
    code systems and value sets must be registered with its validator too, or lines claiming them
    would be checked less in a worker than in the importing thread."""
    _exit_with_parent()
    if ipt_canonical_base is not None:
        conformance.install(ipt_canonical_base)


def _exit_with_parent() -> None:
    """Workers wait on a queue whose write end they hold themselves, so a killed importer (SIGKILL,
    OOM) would leave them waiting forever: a thread ends the worker when its parent is gone."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def discard(broken: ProcessPoolExecutor) -> None:
    """Forget a pool whose worker died (the next import starts a fresh one)."""
    global _pool
    with _pool_lock:
        if _pool is broken:
            _pool = None
    broken.shutdown(wait=False, cancel_futures=True)
