"""Bulk import of NDJSON (one resource per line; plain or .gz), HTTP-free.

Semantics: every line is validated; ids come from the files (update-as-create, like `PUT Type/id`), so a
rerun makes no duplicates, and a resource whose content (meta.versionId/lastUpdated aside) is unchanged
gets no new version. Conditional references (`Practitioner?identifier=sys|val`) are resolved to exactly
one resource, looked up first among the resources being imported (all files, scanned once beforehand)
and then in the database. Lines are written in batches, each batch one unit of work: a killed process
leaves whole batches only, and a rerun completes the rest. A batch that fails as a whole (a business
rule, a concurrent writer) is retried line by line so that only the guilty lines are reported.

Where the time goes: parsing, validating and extracting index rows is ~80% of the CPU an import needs,
so lines are prepared in worker processes (services/bulk_prepare.py), chunk by chunk, while this thread
writes the batches before them (store/bulk_write.py: binary COPY on PostgreSQL).
"""
from __future__ import annotations

import gzip
import io
import json
import logging
import os
import re
import sqlite3
import time
import uuid
import zlib
from collections import Counter, deque
from contextlib import closing, nullcontext
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import parse_qsl

import orjson
import psycopg
from sqlalchemy.exc import DataError, IntegrityError

from ipt_fhir.fhir.jsonio import dump_json, load_stored
from ipt_fhir.fhir.outcome import FHIRError, Issue, bad_request, error, operation_outcome
from ipt_fhir.fhir.references import on_this_server
from ipt_fhir.fhir.resource_types import REST_TYPES
from ipt_fhir.services import bulk_prepare
from ipt_fhir.services import resources as rs
from ipt_fhir.services import write_hooks
from ipt_fhir.services.bulk_jobs import JobRunner, failure_reason
from ipt_fhir.services.bulk_prepare import Failed, Prepared, Unresolved
from ipt_fhir.services.search import find_ids
from ipt_fhir.store import bulk, bulk_write
from ipt_fhir.store.database import Database
from ipt_fhir.store.resources import StoredVersion
from ipt_fhir.store.search_index import table_rows

log = logging.getLogger("ipt_fhir.bulk_import")

_READ_BLOCK = 1 << 22


@dataclass
class Source:
    """One NDJSON input: a name for reports and a way to open it (bytes lines)."""

    name: str
    open: Callable[[], io.BufferedIOBase]

    @classmethod
    def path(cls, path: Path, name: str | None = None) -> "Source":
        path = Path(path)
        opener = (lambda: gzip.open(path, "rb")) if path.name.endswith(".gz") else (lambda: open(path, "rb"))
        return cls(name or path.name, opener)

    def lines(self) -> Iterator[tuple[int, bytes]]:
        """The numbered non-blank lines (NDJSON splits at LF only), read in large blocks: iterating a
        GzipFile line by line cost more than decompressing it."""
        number = 0
        tail = b""
        try:
            with self.open() as f:
                while block := f.read(_READ_BLOCK):
                    lines = (tail + block).split(b"\n")
                    tail = lines.pop()
                    for line in lines:
                        number += 1
                        if line and not line.isspace():
                            yield number, line
        except (OSError, EOFError, zlib.error) as exc:  # a truncated or corrupt .gz, a file gone meanwhile
            raise bad_request(f"{self.name} cannot be read after line {number}: {exc}", code="structure") from None
        if tail and not tail.isspace():
            yield number + 1, tail


@dataclass
class LineError:
    file: str
    line: int
    status: int
    issues: list[Issue]

    def outcome(self) -> dict:
        # An issue about the line as a whole (not JSON, not a resource) names the resource it should be.
        oo = operation_outcome([Issue(i.severity, i.code, f"{self.file} line {self.line}: {i.diagnostics}",
                                      i.expression or (("Resource",) if i.is_error else ())) for i in self.issues])
        oo["extension"] = [{"url": "http://ipt-fhir.org/fhir/StructureDefinition/bulk-import-source",
                            "extension": [{"url": "file", "valueString": self.file},
                                          {"url": "line", "valueInteger": self.line}]}]
        return oo


@dataclass
class ImportReport:
    lines: int = 0
    created: Counter = field(default_factory=Counter)
    updated: Counter = field(default_factory=Counter)
    unchanged: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)
    errors: list[LineError] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def written(self) -> int:
        return sum(self.created.values()) + sum(self.updated.values())

    def by_type(self) -> dict[str, dict[str, int]]:
        types = sorted(set(self.created) | set(self.updated) | set(self.unchanged) | set(self.failed))
        return {t: {"created": self.created[t], "updated": self.updated[t], "unchanged": self.unchanged[t],
                    "failed": self.failed[t]} for t in types}


class Cancelled(Exception):
    pass


# Lines per chunk handed to a worker process: big enough that sending it costs little beside preparing
# it, small enough that every worker gets work from a batch of 1000.
CHUNK_LINES = 250


def default_workers() -> int:
    """Processes preparing lines: one per core this process may run on, at most 4 (the database server
    and the writing thread need their share of the machine too)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, 4))


class Importer:
    """`workers`: processes preparing lines while this thread writes (None: `default_workers()`); 0
    prepares them in this thread. Imports under two chunks are always prepared here: starting and
    feeding workers would cost more than it saves."""

    def __init__(self, db: Database, *, base_url: str = "", batch: int = 1000, dry_run: bool = False,
                 progress: Callable[[ImportReport, int], None] | None = None,
                 cancelled: Callable[[], bool] | None = None, workers: int | None = None) -> None:
        self.db = db
        self.base_url = base_url
        self.batch = batch
        self.dry_run = dry_run
        self.progress = progress
        self.cancelled = cancelled or (lambda: False)
        self.workers = default_workers() if workers is None else workers
        self.identifiers: dict[tuple[str, str, str], set[str]] = {}
        self._resolved: dict[str, str | None] = {}
        self._types_stored: dict[str, bool] = {}
        self._executor: ProcessPoolExecutor | None = None

    # --- pass 1: what the files hold ------------------------------------------------------------

    def scan(self, sources: list[Source]) -> int:
        """Count lines and remember every (type, identifier) → ids, for conditional references."""
        total = 0
        for source in sources:
            for _, line in source.lines():
                total += 1
                if b'"identifier"' not in line and b"\\u" not in line:  # (an escaped key is still a key)
                    continue
                try:
                    res = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if not isinstance(res, dict) or not isinstance(res.get("id"), str):
                    continue
                for ident in res.get("identifier") or []:
                    if isinstance(ident, dict) and isinstance(ident.get("value"), str):
                        key = (res.get("resourceType"), ident.get("system") or "", ident["value"])
                        self.identifiers.setdefault(key, set()).add(res["id"])
        return total

    # --- pass 2: prepare (worker processes) and write (this thread) -----------------------------

    def run(self, sources: list[Source]) -> ImportReport:
        started = time.perf_counter()
        total = self.scan(sources)
        report = ImportReport()
        batch: list[Prepared] = []
        keys: set[tuple[str, str]] = set()
        workers = self.workers if total >= 2 * CHUNK_LINES else 0
        # closing: on cancel or error, chunks not started are dropped and the workers released at once
        with closing(self._prepared(sources, workers)) as prepared:
            for line in prepared:
                if self.cancelled():
                    raise Cancelled()
                report.lines += 1
                if isinstance(line, Failed):
                    report.failed[line.resource_type] += 1
                    report.errors.append(LineError(line.file, line.line, line.status, line.issues))
                    continue
                key = (line.resource_type, line.id)
                if key in keys:  # the same resource twice: the later line is a later version
                    self._write(batch, report)
                    batch, keys = [], set()
                batch.append(line)
                keys.add(key)
                if len(batch) >= self.batch:
                    self._write(batch, report)
                    batch, keys = [], set()
                    if self.progress:
                        self.progress(report, total)
        self._write(batch, report)
        report.seconds = time.perf_counter() - started
        if self.progress:
            self.progress(report, total)
        return report

    def _chunks(self, sources: list[Source]) -> Iterator[list[tuple[str, int, bytes]]]:
        chunk: list[tuple[str, int, bytes]] = []
        for source in sources:
            for number, raw in source.lines():
                chunk.append((source.name, number, raw))
                if len(chunk) >= CHUNK_LINES:
                    yield chunk
                    chunk = []
        if chunk:
            yield chunk

    def _prepared(self, sources: list[Source], workers: int) -> Iterator[Prepared | Failed]:
        """Every line prepared, in file order. With workers, chunks are submitted about two batches
        ahead, so they are prepared while this thread writes. The lastUpdated they are prepared with is
        provisional: _write_batch stamps each version as it writes it."""
        with bulk_prepare.workers(workers) if workers else nullcontext() as self._executor:
            ahead = max(2 * workers, -(-2 * self.batch // CHUNK_LINES))
            pending: deque[tuple[Future | None, list, dict, datetime, frozenset]] = deque()
            try:
                for chunk in self._chunks(sources):
                    raws = [raw for _, _, raw in chunk]
                    resolved = {ref: self._resolve(ref) for ref in bulk_prepare.conditional_references(raws)}
                    existing = self._existing(raws)
                    now = rs.now_utc()
                    future = None
                    if self._executor is not None:
                        try:
                            future = self._executor.submit(bulk_prepare.prepare_chunk, chunk, resolved, now,
                                                           existing)
                        except BrokenProcessPool:
                            self._workers_lost()
                    pending.append((future, chunk, resolved, now, existing))
                    while len(pending) > (ahead if self._executor is not None else 0):
                        yield from self._results(*pending.popleft())
                while pending:
                    yield from self._results(*pending.popleft())
            finally:
                for future, *_ in pending:
                    if future is not None:
                        future.cancel()

    def _results(self, future: Future | None, chunk: list, resolved: dict, now: datetime, existing: frozenset
                 ) -> Iterator[Prepared | Failed]:
        results = None
        if future is not None:
            try:
                results = future.result()
            except BrokenProcessPool:
                self._workers_lost()
        if results is None:
            results = bulk_prepare.prepare_chunk(chunk, resolved, now, existing)
        for item in results:
            if isinstance(item, Unresolved):  # a conditional reference the chunk scan did not see
                item = bulk_prepare.prepare_line(item.file, item.line, item.raw, self._resolve, now, existing)
            yield item

    def _workers_lost(self) -> None:
        """A worker process died (killed, out of memory): this thread prepares the remaining lines; the
        next import starts new workers."""
        if self._executor is not None:
            log.warning("an import worker process died; preparing the remaining lines in-process")
            bulk_prepare.discard(self._executor)
            self._executor = None

    def _existing(self, raws: list[bytes]) -> frozenset[tuple[str, str]]:
        """Which of these lines' resources (by their key hints) are stored already: their index rows are
        not extracted ahead, as an unchanged resource (a rerun) needs none. Asked only for types that
        had any resource stored when the import began, so a first import asks nothing."""
        keys = {k for k in (bulk_prepare.key_hint(raw, self._type_stored) for raw in raws) if k is not None}
        if not keys:
            return frozenset()
        with self.db.read() as conn:
            return frozenset(bulk.existing_keys(conn, list(keys)))

    def _type_stored(self, resource_type: str) -> bool:
        if resource_type not in self._types_stored:
            with self.db.read() as conn:
                self._types_stored[resource_type] = bulk.any_stored(conn, resource_type)
        return self._types_stored[resource_type]

    def _resolve(self, ref: str) -> str | None:
        if ref not in self._resolved:
            self._resolved[ref] = self._conditional(ref)
        return self._resolved[ref]

    def _conditional(self, ref: str) -> str | None:
        local = on_this_server(ref, self.base_url)
        if local is None:
            return None  # a search on another server names nothing here
        resource_type, _, query = local.partition("?")
        if resource_type not in REST_TYPES:
            return None
        params = parse_qsl(query, keep_blank_values=True)
        if len(params) == 1 and params[0][0] == "identifier":
            system, bar, value = params[0][1].rpartition("|")
            if not bar:
                system, value = "", params[0][1]
            ids = self.identifiers.get((resource_type, system, value))
            if ids:
                return f"{resource_type}/{next(iter(ids))}" if len(ids) == 1 else None
        try:
            with self.db.read() as conn:
                ids_db = find_ids(conn, resource_type, params, self.base_url)
        except FHIRError:
            return None
        return f"{resource_type}/{ids_db[0]}" if len(ids_db) == 1 else None

    def _write(self, lines: list[Prepared], report: ImportReport) -> None:
        if not lines or self.dry_run:
            for line in lines if self.dry_run else []:
                report.created[line.resource_type] += 1
            return
        try:
            outcome = self._write_batch(lines)
        except (FHIRError, *_CONFLICTS, *_REFUSED):
            # Somebody in the batch is guilty: find out who, one line per unit of work.
            outcome = {}
            for line in lines:
                try:
                    outcome.update(self._write_batch([line]))
                except FHIRError as exc:
                    report.failed[line.resource_type] += 1
                    report.errors.append(LineError(line.file, line.line, exc.status, exc.issues))
                except _CONFLICTS:
                    report.failed[line.resource_type] += 1
                    report.errors.append(LineError(line.file, line.line, 409, [
                        error("conflict", f"{line.resource_type}/{line.id} was written concurrently; rerun")]))
                except _REFUSED as exc:
                    report.failed[line.resource_type] += 1
                    detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
                    report.errors.append(LineError(line.file, line.line, 400, [
                        error("invalid", f"The database refused a value of {line.resource_type}/{line.id}: {detail}")]))
        for (resource_type, _), what in outcome.items():
            getattr(report, what)[resource_type] += 1

    def _write_batch(self, lines: list[Prepared]) -> dict[tuple[str, str], str]:
        """One unit of work. New resources are stored as prepared (version 1). Existing ones are
        compared with the stored version (unchanged: nothing written), otherwise rendered again here
        as the next version, with their index rows."""
        outcome: dict[tuple[str, str], str] = {}
        hooks = write_hooks.registered()
        with self.db.write() as conn, rs.deferred_rule_checks(conn) as queue:
            # Stamped here, inside the unit that commits them, not when their chunk was prepared (up to two
            # batches earlier): an export's transactionTime, taken as no write is under way, must be later
            # than every version its snapshot misses (bulk_export), or the next `_since` export skips them.
            now = rs.now_utc()
            current = bulk.current_versions(conn, [(ln.resource_type, ln.id) for ln in lines])
            inserts: list[StoredVersion] = []
            replaces: list[tuple[StoredVersion, int]] = []
            changes: list[write_hooks.Change] = []
            index: dict[str, list[tuple]] = {}
            for ln in lines:
                key = (ln.resource_type, ln.id)
                existing = current.get(key)
                rows, previous, doc = ln.index, None, None
                if existing is None:
                    inserts.append(StoredVersion(ln.resource_type, ln.id, 1, now, False, _restamped(ln.content, now)))
                    outcome[key] = "created"
                    if rows is None:  # it was stored when the line was prepared, and is no more
                        rows = table_rows(ln.resource_type, ln.id, load_stored(ln.content))
                else:
                    version_id, deleted, content = existing
                    if not deleted and _same_stored(content, ln.content):
                        outcome[key] = "unchanged"
                        continue
                    doc = load_stored(ln.content)
                    if not deleted:
                        previous = load_stored(content)
                        if rs.same_content(previous, doc):
                            outcome[key] = "unchanged"
                            continue
                    doc = rs.with_server_meta(doc, ln.id, version_id + 1, now)
                    rows = table_rows(ln.resource_type, ln.id, doc)
                    replaces.append((StoredVersion(ln.resource_type, ln.id, version_id + 1, now, False,
                                                   dump_json(doc)), version_id))
                    outcome[key] = "updated"
                for kind, kind_rows in rows.items():
                    index.setdefault(kind, []).extend(kind_rows)
                if hooks and (doc is not None or write_hooks.wanted(ln.resource_type, ln.content)):
                    doc = doc if doc is not None else load_stored(ln.content)  # parsed only for a hook
                    change = write_hooks.Change(ln.resource_type, ln.id, "PUT", doc, previous)
                    queue.append((key, change))  # rules see the whole batch written (deferred, as in a transaction)
                    changes.append(change)
            bulk_write.insert_current(conn, inserts)
            bulk_write.insert_history(conn, inserts, "PUT")
            if replaces:
                if bulk.replace_versions(conn, replaces) != len(replaces):
                    raise FHIRError.of(409, "conflict", "A resource of this batch changed concurrently")
                bulk_write.insert_history(conn, [v for v, _ in replaces], "PUT")
                bulk.delete_index_rows(conn, [(v.resource_type, v.id) for v, _ in replaces])
            bulk_write.insert_index_rows(conn, index)
            for change in changes:
                for hook in hooks:
                    hook.after_write(conn, change)
            found = rs.run_deferred_checks(conn, queue)
            bad = [(tag, issues) for tag, issues in found if any(i.is_error for i in issues)]
            if bad:
                raise FHIRError(422, [i for _, issues in bad for i in issues])
        return outcome


# A concurrent writer of the same ids: SQLAlchemy's wrapper, or the driver's own error from the COPY
# and executemany statements that bypass SQLAlchemy.
_CONFLICTS: tuple[type[Exception], ...] = (IntegrityError, sqlite3.IntegrityError, psycopg.IntegrityError)
# A value the validator let through but a column cannot hold: that line is reported, the rest imported.
_REFUSED: tuple[type[Exception], ...] = (DataError, sqlite3.DataError, psycopg.DataError)

# meta.versionId and meta.lastUpdated as `with_server_meta` writes them: the last two keys of `meta`,
# itself the third key of the document, so the first match is the server's own (a validated resource
# has no such keys in the meta elements before them).
_SERVER_META_BYTES = re.compile(rb'"versionId":"[^"]*","lastUpdated":"[^"]*"')


def _restamped(content: bytes, now: datetime) -> bytes:
    """A prepared version 1's stored JSON with meta.lastUpdated `now`."""
    server_meta = b'"versionId":"1","lastUpdated":"' + rs.format_instant(now).encode() + b'"'
    return _SERVER_META_BYTES.sub(lambda _: server_meta, content, 1)


def _same_stored(stored: bytes | None, incoming: bytes) -> bool:
    """A cheap proof that the stored version has the incoming content: the same bytes once the server
    meta is blanked. False only means "compare the parsed documents" (key order may differ)."""
    if stored is None:
        return False
    return _SERVER_META_BYTES.sub(b"", bytes(stored), 1) == _SERVER_META_BYTES.sub(b"", incoming, 1)


def sources_from_paths(paths: list[Path]) -> list[Source]:
    """Files and folders (recursively) of .ndjson / .ndjson.gz, in a stable order."""
    out = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            out += [Source.path(p, str(p.relative_to(path))) for p in sorted(path.rglob("*"))
                    if p.is_file() and p.name.endswith((".ndjson", ".ndjson.gz"))]
        else:
            out.append(Source.path(path))
    return out


# --- server jobs ---------------------------------------------------------------------------------

class ImportJobs(JobRunner):
    """$import jobs (see bulk_jobs.py). On start, jobs a killed process left queued or running are
    run again (imports are idempotent)."""

    kind = "import"

    def __init__(self, db: Database, bulk_dir: Path, batch: int = 1000) -> None:
        super().__init__(db)
        self.dir = Path(bulk_dir).resolve()  # absolute: inputs are checked against it, uploads written to it
        self.batch = batch

    def allowed_path(self, url: str) -> Path:
        """Inputs the server reads must lie under its bulk directory (no arbitrary file reads), and be
        NDJSON files: refused at kick-off, not found failing once the job runs."""
        if "://" in url and not url.startswith("file://"):
            raise bad_request(f"Input '{url}' is not a file of this server: $import reads files under its bulk "
                              "directory (or NDJSON sent in the request)", "input.url", code="not-supported")
        path = Path(url[len("file://"):] if url.startswith("file://") else url)
        if not path.is_absolute():
            path = self.dir / path
        try:
            path = path.resolve()
            root = self.dir.resolve()
            if root not in path.parents and path != root:
                raise bad_request(f"Input '{url}' is outside the server's bulk directory", "input.url")
            if not path.exists():
                raise bad_request(f"Input '{url}' does not exist", "input.url")
            if not path.is_file():
                raise bad_request(f"Input '{url}' is a folder, not an NDJSON file", "input.url")
        except OSError as exc:  # a name the file system refuses (over 255 bytes, say)
            raise bad_request(f"Input '{url}' names no file this server can open ({exc.strerror})",
                              "input.url") from None
        return path

    def kick_off(self, inputs: list[str], *, base_url: str, upload: bytes | None = None,
                 owner: str | None = None) -> str:
        """Starts the job; `owner`: who may poll, read and cancel it (api/bulk_routes, None: anyone)."""
        job_id = uuid.uuid4().hex
        if upload is not None:
            target = self.dir / "uploads" / f"{job_id}.ndjson"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(upload)
            inputs = [str(target)]
        paths = [str(self.allowed_path(u)) for u in inputs]
        if not paths:
            raise bad_request("The $import request names no input", "input", code="required")
        with self.db.write() as conn:
            bulk.create_job(conn, job_id, "import", json.dumps({"inputs": paths, "base_url": base_url, "owner": owner}),
                            rs.now_utc())
        self.start(job_id)
        return job_id

    def resume_unfinished(self, stale_seconds: float = 60) -> list[str]:
        """Jobs a stopped server interrupted, and jobs a killed one left queued or running (no progress
        for `stale_seconds`: not another live server's). Each is claimed first, so that of several
        servers starting together only one runs it."""
        from datetime import timedelta

        now = rs.now_utc()
        cutoff = now - timedelta(seconds=stale_seconds)
        with self.db.read() as conn:
            candidates = [(i, bulk.get_job(conn, i)) for i in
                          bulk.jobs_with_status(conn, "import", ("interrupted", "queued", "running"))]
        ids = []
        for job_id, job in candidates:
            if job["status"] != "interrupted" and _utc(job["updated"]) >= cutoff:
                continue
            with self.db.write() as conn:
                claimed = bulk.update_job(conn, job_id, now, status="queued", only_if_status=(job["status"],))
            if claimed:
                ids.append(job_id)
                self.start(job_id)
        return ids

    def resume_until_settled(self, stale_seconds: float = 60) -> None:
        """resume_unfinished now, and again whenever an unfinished job that no thread of this process runs
        turns stale, until none is left: a server restarted within `stale_seconds` of a crash finds the
        crashed job still fresh, and once was the only look it got (it stayed queued for ever). Returns
        when no such job is left or the server stops."""
        from datetime import timedelta

        while not self._stopping.is_set():
            self.resume_unfinished(stale_seconds)
            with self.db.read() as conn:
                waiting = [bulk.get_job(conn, i) for i in
                           bulk.jobs_with_status(conn, "import", ("queued", "running"))]
            stale_at = [_utc(job["updated"]) + timedelta(seconds=stale_seconds)
                        for job in waiting if job is not None and not self.running_here(job["id"])]
            if not stale_at:
                return
            self._stopping.wait(max(1.0, (min(stale_at) - rs.now_utc()).total_seconds()))

    def cancel(self, job_id: str) -> bool:
        self.request_cancel(job_id)
        with self.db.write() as conn:
            cancelled = bulk.update_job(conn, job_id, rs.now_utc(), status="cancelled",
                                        only_if_status=("queued", "running", "interrupted", "completed", "failed"))
        if cancelled:  # a running job may still read it: unlinking an open file is safe on POSIX
            self._discard_upload(job_id)
        return cancelled

    def _run(self, job_id: str) -> None:
        job = self.status(job_id)
        if job is None:
            return
        request = json.loads(job["request"])
        with self.db.write() as conn:
            if not bulk.update_job(conn, job_id, rs.now_utc(), status="running", only_if_status=("queued", "running")):
                return

        def progress(report: ImportReport, total: int) -> None:
            with self.db.write() as conn:
                bulk.update_job(conn, job_id, rs.now_utc(), progress=json.dumps(
                    {"processed": report.lines, "total": total, "written": report.written,
                     "unchanged": sum(report.unchanged.values()), "failed": len(report.errors)}))

        importer = Importer(self.db, base_url=request.get("base_url", ""), batch=self.batch, progress=progress,
                            cancelled=lambda: self.cancelled(job_id))
        try:
            report = importer.run([Source.path(Path(p)) for p in request["inputs"]])
        except Cancelled:
            if not self.cancelled_by_client(job_id):  # the server is stopping: the next start resumes it
                with self.db.write() as conn:
                    bulk.update_job(conn, job_id, rs.now_utc(), status="interrupted", only_if_status=("running",))
            return
        except Exception as exc:  # noqa: BLE001 - a job failure is reported through its status
            log.exception("import job %s failed", job_id)
            with self.db.write() as conn:
                bulk.update_job(conn, job_id, rs.now_utc(), status="failed",
                                result=json.dumps({"error": failure_reason(exc, "import")}))
            self._discard_upload(job_id)
            return
        out_dir = self.dir / job_id
        out_dir.mkdir(parents=True, exist_ok=True)
        error_file = None
        if report.errors:
            error_file = out_dir / "errors.ndjson"
            with open(error_file, "wb") as f:
                for e in report.errors:
                    f.write(orjson.dumps(e.outcome()) + b"\n")
        result = {
            "transactionTime": rs.format_instant(rs.now_utc()),
            "request": "$import",
            "requiresAccessToken": False,
            "output": [{"type": t, "count": c["created"] + c["updated"] + c["unchanged"], **c}
                       for t, c in report.by_type().items()],
            "error": [{"type": "OperationOutcome", "file": f"{job_id}/errors.ndjson", "count": len(report.errors)}]
            if error_file else [],
            "lines": report.lines,
            "seconds": round(report.seconds, 3),
        }
        with self.db.write() as conn:
            bulk.update_job(conn, job_id, rs.now_utc(), status="completed", result=json.dumps(result),
                            progress=json.dumps({"processed": report.lines, "total": report.lines,
                                                 "written": report.written,
                                                 "unchanged": sum(report.unchanged.values()),
                                                 "failed": len(report.errors)}),
                            only_if_status=("running",))
        self._discard_upload(job_id)

    def _discard_upload(self, job_id: str) -> None:
        """A body the client uploaded is patient data kept only until its job has finished with it or was
        cancelled (an interrupted job keeps it, to resume)."""
        (self.dir / "uploads" / f"{job_id}.ndjson").unlink(missing_ok=True)


def _utc(t):  # noqa: ANN001, ANN202 - SQLite returns naive datetimes; everything stored is UTC
    from datetime import timezone

    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)
