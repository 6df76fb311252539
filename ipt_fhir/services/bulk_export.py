"""Bulk Data export (https://hl7.org/fhir/uv/bulkdata/export.html), HTTP-free.

System, Patient and Group level; `_type`, `_since` and `_typeFilter` (search criteria per type). A job
writes one NDJSON file per type (the stored bytes, one per line, no re-serialisation) into the bulk
directory and a manifest; files are served by the API at `$export-file/{job}/{file}`.
"""
from __future__ import annotations

import json
import logging
import shutil
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import parse_qsl

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ipt_fhir.domain.canonical import split_reference
from ipt_fhir.fhir.dates import since_param
from ipt_fhir.fhir.outcome import bad_request, not_found
from ipt_fhir.fhir.references import on_this_server
from ipt_fhir.fhir.resource_types import REST_TYPES
from ipt_fhir.security.compartment import compartment_types
from ipt_fhir.services import resources as rs
from ipt_fhir.services import search as search_service
from ipt_fhir.services.bulk_jobs import JobRunner, failure_reason, is_file
from ipt_fhir.store import bulk
from ipt_fhir.store.database import Database
from ipt_fhir.store.search_sql import SqlBuilder, local_reference
from ipt_fhir.store.search_tables import reference_index as T
from ipt_fhir.store.tables import resource_table as R

log = logging.getLogger("ipt_fhir.bulk_export")

# PostgreSQL: how long before its first statement reaches the server a write may stamp its versions (its
# transaction begins at that statement); generous, as an export repeating a second of changes costs nothing.
STAMP_MARGIN = timedelta(seconds=1)


def _transaction_time(conn: Connection) -> datetime:
    """The manifest's transactionTime, read in the unit of work that marks the export running: every
    version stamped up to it must be committed already, or the export's snapshots may miss it and the next
    export `_since` it skips it for good (the Bulk Data manifest holds what changed "up to and including"
    it). On SQLite that unit holds the one writer, and writes stamp their versions inside theirs, so every
    version stamped before now has committed. PostgreSQL writers run side by side: the time stays before
    the oldest transaction still open, and before any write about to begin one (STAMP_MARGIN)."""
    now = rs.now_utc()
    if conn.dialect.name != "postgresql":
        return now
    oldest = conn.exec_driver_sql(
        "SELECT min(xact_start) FROM pg_stat_activity WHERE xact_start IS NOT NULL "
        "AND datname = current_database() AND pid <> pg_backend_pid()").scalar()
    return min(now, oldest or now) - STAMP_MARGIN

class ExportRequest:
    def __init__(self, level: str, *, types: list[str] | None, since: datetime | None,
                 type_filters: dict[str, list[list[tuple[str, str]]]], patients: list[str] | None = None,
                 group: str | None = None, lenient: bool = False) -> None:
        self.level = level  # system | patient | group
        self.types = types
        self.since = since
        self.type_filters = type_filters
        self.patients = patients
        self.group = group
        self.lenient = lenient  # Prefer: handling=lenient, for the kick-off's checks (not kept with the job)

    def to_json(self) -> str:
        return json.dumps({"level": self.level, "types": self.types,
                           "since": self.since.isoformat() if self.since else None,
                           "type_filters": self.type_filters, "patients": self.patients, "group": self.group})

    @classmethod
    def from_json(cls, text: str) -> "ExportRequest":
        d = json.loads(text)
        return cls(d["level"], types=d["types"], since=datetime.fromisoformat(d["since"]) if d["since"] else None,
                   type_filters={k: [[tuple(p) for p in f] for f in v] for k, v in d["type_filters"].items()},
                   patients=d.get("patients"), group=d.get("group"))


# Kick-off parameters of the Bulk Data export this server takes as a hint only: without Prefer:
# handling=lenient a request naming them is refused ("If a server doesn't support a parameter, it SHOULD
# return an error ... unless the client includes a Prefer: handling=lenient header").
_UNSUPPORTED = {"_elements": "every exported resource is complete", "includeAssociatedData": "no associated data"}


def parse_export_params(level: str, params: list[tuple[str, str]], group: str | None = None, *,
                        base_url: str = "", lenient: bool = False) -> ExportRequest:
    """The export a kick-off asks for, every parameter checked now (an error is a 400 here, not a job
    that fails later). `base_url` is this server's FHIR base: an absolute `patient` URL names a patient
    here only under it (no base: none does)."""
    since = None
    filters: dict[str, list[list[tuple[str, str]]]] = {}
    patients: list[str] | None = None
    for name, value in params:
        if name == "_outputFormat":
            if value not in ("application/fhir+ndjson", "application/ndjson", "ndjson"):
                raise bad_request(f"_outputFormat {value!r} is not supported; use application/fhir+ndjson",
                                  "_outputFormat")
        elif name == "_type":
            continue  # search.types_wanted, below
        elif name == "_since":
            since = since_param(value)
        elif name == "_typeFilter":
            for part in value.split(","):
                rtype, _, query = part.strip().partition("?")
                if rtype not in REST_TYPES or not query:
                    raise bad_request(f"_typeFilter {part!r} must be [type]?[search criteria]", "_typeFilter")
                criteria = parse_qsl(query, keep_blank_values=True)
                search_service.parse_criteria(rtype, criteria, "", strict=True)  # as the export will search
                filters.setdefault(rtype, []).append(criteria)
        elif name == "patient":
            if level == "system":
                raise bad_request("patient is a parameter of Patient- and Group-level export", "patient")
            named = [_named_patient(v, base_url) for v in value.split(",") if v.strip()]
            if named:  # an empty value is no parameter (search.html#errors), not an empty list of patients
                patients = (patients or []) + named
        elif name in _UNSUPPORTED:
            if not lenient:
                raise bad_request(f"Export parameter {name} is not supported ({_UNSUPPORTED[name]}); send "
                                  "Prefer: handling=lenient to have it ignored", name, code="not-supported")
        elif name in ("_format", "_pretty"):
            continue
        else:
            raise bad_request(f"Export parameter {name!r} is not supported", name)
    types = search_service.types_wanted(params) or None
    return ExportRequest(level, types=types, since=since, type_filters=filters, patients=patients, group=group,
                         lenient=lenient)


def _named_patient(value: str, base_url: str) -> str:
    """What a `patient` value names, for the kick-off's check: the id of `id`, `Patient/id` (a version
    suffix dropped) or that under this server's base `base_url`. A Patient URL under another base names
    that server's patient: it is kept as it is, and as no id has a '/', the check finds it is not on this
    server, as an unknown id (400, or dropped under Prefer: handling=lenient). A reference to another
    type names no patient: 400, lenient or not."""
    reference = value.strip()
    if "/" not in reference:
        return reference
    local = on_this_server(reference, base_url)
    if local is None:  # another server's: a Patient URL is kept whole
        parts = split_reference(reference)
        if parts is None or parts[0] != "Patient" or not parts[1]:
            raise bad_request(f"patient {reference!r} is not a reference to a Patient", "patient")
        return reference
    # Patient/id or Patient/id/_history/v, nothing before or between (Observation/9/Patient/1 is no patient)
    segments = local.split("/")
    if len(segments) == 4 and segments[2] == "_history" and segments[3]:
        del segments[2:]
    if len(segments) != 2 or segments[0] != "Patient" or not segments[1]:
        raise bad_request(f"patient {reference!r} is not a reference to a Patient", "patient")
    return segments[1]


def _as_reference(named: str) -> str:
    """A named patient as the kick-off's refusal shows it: a local id as Patient/id, a URL as it came."""
    return named if "/" in named else f"Patient/{named}"


class Exporter:
    def __init__(self, db: Database, *, base_url: str = "") -> None:
        self.db = db
        self.base_url = base_url

    def types_for(self, req: ExportRequest) -> list[str]:
        if req.level == "system":
            available = sorted(REST_TYPES)
        else:
            available = sorted(compartment_types())
        if req.types:
            return [t for t in req.types if t in available]
        if req.level == "system":
            with self.db.read() as conn:
                present = {r[0] for r in conn.execute(sa.select(R.c.resource_type).where(R.c.deleted.is_(False))
                                                      .group_by(R.c.resource_type))}
            return [t for t in available if t in present]
        return available

    @staticmethod
    def patients_for(conn: Connection, req: ExportRequest, base_url: str) -> list[str] | None:
        """The ids of the patients whose data the export holds, None at system level (no restriction).
        A Group's members are the Patients its `member` search parameter finds (member.entity), local as
        a search by Patient/[id] means it (search_sql.local_reference): relative, versioned or under this
        server's base `base_url` alike, never another server's."""
        if req.level == "system":
            return None
        if req.level == "group":
            _require_group(conn, req.group or "")
            members = list(conn.execute(sa.select(T.c.target_id).distinct().where(
                T.c.resource_type == "Group", T.c.resource_id == req.group, SqlBuilder.param_is(T, "Group", "member"),
                T.c.target_type == "Patient", T.c.target_id.is_not(None),
                *local_reference(T, base_url))).scalars())
            if req.patients is not None:
                named = set(req.patients)
                members = [p for p in members if p in named]
            return members
        if req.patients is not None:
            return req.patients
        return [r[0] for r in conn.execute(sa.select(R.c.id).where(R.c.resource_type == "Patient",
                                                                     R.c.deleted.is_(False)).order_by(R.c.id))]

    def rows(self, conn: Connection, resource_type: str, req: ExportRequest, patients: list[str] | None
             ) -> Iterator[bytes]:
        """Stored bytes of every current resource of the type that the request selects."""
        # each _typeFilter parsed once, not again for every chunk of patients
        filters = [search_service.parse_criteria(resource_type, criteria, self.base_url, strict=True)[0]
                   for criteria in req.type_filters.get(resource_type, ())] or [[]]
        seen: set[str] = set()
        patient_groups: list[list[str] | None] = [None] if patients is None else [
            patients[i:i + 200] for i in range(0, len(patients), 200)]
        for group in patient_groups:
            if group is not None and not group:
                continue
            for clauses in filters:
                builder = SqlBuilder(self.base_url, expand_valueset=search_service.expander(conn))
                conds = search_service.where_conditions(resource_type, clauses, builder)
                if req.since is not None:
                    conds.append(R.c.last_updated > req.since)
                if group is not None:
                    conds.append(sa.or_(*[builder.condition(resource_type, search_service._compartment_clause(
                        resource_type, pid), R.c.resource_type, R.c.id, drive=False) for pid in group]))
                stmt = sa.select(R.c.id, R.c.content).where(*conds).order_by(R.c.id)
                for rid, content in conn.execution_options(yield_per=500).execute(stmt):
                    if rid in seen:
                        continue
                    if len(filters) > 1 or patient_groups != [None]:
                        seen.add(rid)
                    yield content

    def run(self, req: ExportRequest, out_dir: Path, *, cancelled: Callable[[], bool] = lambda: False,
            progress: Callable[[str, int], None] | None = None) -> list[dict]:
        out_dir.mkdir(parents=True, exist_ok=True)
        output = []
        with self.db.read() as conn:
            patients = self.patients_for(conn, req, self.base_url)
            for resource_type in self.types_for(req):
                if cancelled():
                    break
                path = out_dir / f"{resource_type}.ndjson"
                count = 0
                with open(path, "wb") as f:
                    for content in self.rows(conn, resource_type, req, patients):
                        f.write(content)
                        f.write(b"\n")
                        count += 1
                        if count % 1000 == 0 and cancelled():
                            break
                if count:
                    output.append({"type": resource_type, "file": path.name, "count": count})
                else:
                    path.unlink()
                if progress:
                    progress(resource_type, count)
        return output


def _named_patients_outside(conn: Connection, req: ExportRequest, base_url: str) -> list[str]:
    """The patients the `patient` parameter names that the export cannot include: those not on the
    server (or deleted, or named by another server's URL) and, at Group level, those that are not
    members (404 for an unknown Group), membership read as the export reads it."""
    named = list(dict.fromkeys(req.patients or ()))
    if not named:
        if req.level == "group":
            _require_group(conn, req.group or "")
        return []
    included = set(conn.execute(sa.select(R.c.id).where(R.c.resource_type == "Patient", R.c.id.in_(named),
                                                        R.c.deleted.is_(False))).scalars())
    if req.level == "group":
        included &= set(Exporter.patients_for(conn, req, base_url) or ())
    return [p for p in named if p not in included]


def _require_group(conn: Connection, group_id: str) -> None:
    """404 unless the Group is on the server (only its row's flag is read: a Group's body can be large)."""
    deleted = conn.execute(sa.select(R.c.deleted).where(R.c.resource_type == "Group", R.c.id == group_id)).scalar()
    if deleted is None or deleted:
        raise not_found(f"Group/{group_id} is not known")


class ExportJobs(JobRunner):
    """$export jobs (see bulk_jobs.py); their files go under the bulk directory's export/ folder."""

    kind = "export"

    def __init__(self, db: Database, bulk_dir: Path) -> None:
        super().__init__(db)
        self.dir = Path(bulk_dir) / "export"

    def kick_off(self, req: ExportRequest, *, base_url: str, request_url: str, owner: str | None = None) -> str:
        """Starts the job. A Group that does not exist is a 404 now, not a failed job. A `patient` the
        export cannot include (not on the server, or at Group level not a member of the group) is a 400
        now (Bulk Data export.html: "the server SHOULD return details via a FHIR OperationOutcome resource
        in an error response"), unless the client sent Prefer: handling=lenient: then the others export."""
        if req.level == "group" or req.patients:
            with self.db.read() as conn:
                outside = _named_patients_outside(conn, req, base_url)
            if outside and not req.lenient:
                where = f"a member of Group/{req.group}" if req.level == "group" else "on this server"
                raise bad_request(f"patient names {', '.join(map(_as_reference, outside))}: each must be "
                                  f"{where}; send Prefer: handling=lenient to export the others", "patient")
            if outside:  # lenient: the export holds none of their data
                req.patients = [p for p in req.patients or () if p not in outside]
        job_id = uuid.uuid4().hex
        with self.db.write() as conn:
            bulk.create_job(conn, job_id, "export", json.dumps(
                {"export": req.to_json(), "base_url": base_url, "request_url": request_url, "owner": owner}),
                rs.now_utc())
        self.start(job_id)
        return job_id

    def cancel(self, job_id: str) -> bool:
        """Cancel a running job, or delete a finished one and its files."""
        self.request_cancel(job_id)
        with self.db.write() as conn:
            job = bulk.get_job(conn, job_id)
            if job is None or job["kind"] != "export":
                return False
            bulk.delete_job(conn, job_id)
        shutil.rmtree(self.dir / job_id, ignore_errors=True)
        return True

    def file_path(self, job_id: str, name: str) -> Path | None:
        if not job_id.isalnum() or "/" in name or name.startswith(".") or not name.endswith(".ndjson"):
            return None
        path = self.dir / job_id / name
        return path if is_file(path) else None

    def _run(self, job_id: str) -> None:
        job = self.status(job_id)
        if job is None:
            return
        request = json.loads(job["request"])
        req = ExportRequest.from_json(request["export"])
        with self.db.write() as conn:
            started = _transaction_time(conn)
            bulk.update_job(conn, job_id, rs.now_utc(), status="running", only_if_status=("queued",))
        done: list[str] = []

        def progress(resource_type: str, count: int) -> None:
            done.append(resource_type)
            with self.db.write() as conn:
                bulk.update_job(conn, job_id, rs.now_utc(), progress=json.dumps({"types_done": done}))

        try:
            output = Exporter(self.db, base_url=request["base_url"]).run(
                req, self.dir / job_id, cancelled=lambda: self.cancelled(job_id), progress=progress)
        except Exception as exc:  # noqa: BLE001 - reported through the job status
            log.exception("export job %s failed", job_id)
            with self.db.write() as conn:
                bulk.update_job(conn, job_id, rs.now_utc(), status="failed",
                                result=json.dumps({"error": failure_reason(exc, "export")}))
            return
        if self.cancelled(job_id):
            shutil.rmtree(self.dir / job_id, ignore_errors=True)
            if not self.cancelled_by_client(job_id):  # the server is stopping: say so, not run forever
                with self.db.write() as conn:
                    bulk.update_job(conn, job_id, rs.now_utc(), status="failed", only_if_status=("running",),
                                    result=json.dumps({"error": "The server stopped before this export "
                                                       "finished; start the export again"}))
            return
        manifest = {"transactionTime": rs.format_instant(started), "request": request["request_url"],
                    "requiresAccessToken": False, "output": output, "error": []}
        with self.db.write() as conn:
            bulk.update_job(conn, job_id, rs.now_utc(), status="completed", result=json.dumps(manifest),
                            only_if_status=("running",))
