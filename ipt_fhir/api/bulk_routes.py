"""Bulk data: $import (NDJSON in) and $export (https://hl7.org/fhir/uv/bulkdata/), both with the async
request pattern: kick-off → 202 + Content-Location → poll (202 + X-Progress, then 200 + result) → DELETE
cancels. Registered before the REST router so `$`-paths are never taken for a type or an id."""
from __future__ import annotations

import json
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from starlette.concurrency import run_in_threadpool

from ipt_fhir.fhir.jsonio import parse_json
from ipt_fhir.fhir.outcome import FHIRError, bad_request, error, information, not_found, operation_outcome
from ipt_fhir.fhir.resource_types import REST_TYPES
from ipt_fhir.security import context, guard
from ipt_fhir.security.scopes import AUDIT_TYPE
from ipt_fhir.services.bulk_export import ExportJobs, ExportRequest, parse_export_params
from ipt_fhir.services.bulk_import import ImportJobs
from ipt_fhir.services.bulk_jobs import is_file

from .body import NDJSON, NDJSON_TYPES, at_root, body_root
from .negotiation import body_media_type, response_media_type
from .responses import fhir_base_url, prefer_header, prefers_lenient_handling
from .search_routes import operation_params

router = APIRouter(prefix="/fhir", tags=["bulk data"])



def import_jobs(request: Request) -> ImportJobs:
    state = request.app.state
    jobs = getattr(state, "import_jobs", None)
    if jobs is None:
        s = state.settings
        jobs = state.import_jobs = ImportJobs(state.database, Path(s.bulk_dir), batch=s.bulk_import_batch)
    return jobs


def export_jobs(request: Request) -> ExportJobs:
    state = request.app.state
    jobs = getattr(state, "export_jobs", None)
    if jobs is None:
        jobs = state.export_jobs = ExportJobs(state.database, Path(state.settings.bulk_dir))
    return jobs


def _accepted(location: str) -> Response:
    return Response(status_code=202, headers={"Content-Location": location},
                    content=json.dumps(operation_outcome([information("Accepted; poll Content-Location")])),
                    media_type="application/fhir+json")


def _poll(job: dict | None, what: str) -> Response | None:
    """The answer for a job that is not complete (202 with progress; 404; its failure), None once it is."""
    if job is None or job["status"] == "cancelled":
        raise not_found(f"No such {what} job")
    if job["status"] in ("queued", "running", "interrupted"):  # interrupted: resumed by the next start
        progress = json.loads(job["progress"]) if job["progress"] else {}
        text = ", ".join(f"{k} {v}" for k, v in progress.items()) or job["status"]
        return Response(status_code=202, headers={"X-Progress": text[:200], "Retry-After": "1"})
    if job["status"] == "failed":
        detail = json.loads(job["result"] or "{}").get("error", "the job failed")
        raise FHIRError(500, [error("exception", f"The {what} job failed: {detail}")])
    return None


# --- $import ---------------------------------------------------------------------------------------

def _import_inputs(body: object) -> list[str]:
    """Parameters {input: [{type, url}]} (the Bulk Import draft) or plain JSON {"input": [{"url"}]}."""
    if not isinstance(body, dict):
        raise bad_request("The $import body must be a Parameters resource or NDJSON", code="structure")
    urls = []
    if body.get("resourceType") == "Parameters":
        for p in body.get("parameter") or []:
            if p.get("name") == "input":
                for part in p.get("part") or []:
                    if part.get("name") == "url":
                        urls.append(part.get("valueUrl") or part.get("valueUri") or part.get("valueString"))
    else:
        urls = [i.get("url") for i in body.get("input") or [] if isinstance(i, dict)]
    urls = [u for u in urls if isinstance(u, str) and u]
    if not urls:
        raise bad_request("The $import request names no input url", "Parameters.parameter", code="required")
    return urls


@router.post("/$import", summary="Bulk import of NDJSON (async): Parameters naming server files, or NDJSON in the body")
async def kick_off_import(request: Request) -> Response:
    response_media_type(request)  # an OperationOutcome in XML is not served: 406 before a job starts
    ctype = body_media_type(request)
    root = body_root(request.scope["path"], ctype)  # NDJSON lines of resources, or Parameters
    try:
        body = await request.body()
        limit = request.app.state.settings.max_body_bytes
        if len(body) > limit:
            raise FHIRError.of(413, "too-long", f"The request body is larger than {limit} bytes")
        if ctype not in NDJSON_TYPES and ctype not in ("application/fhir+json", "application/json"):
            raise FHIRError.of(415, "not-supported", "$import takes application/fhir+json (Parameters) or "
                               "application/fhir+ndjson")
        inputs = [] if ctype in NDJSON_TYPES else _import_inputs(parse_json(body))
    except FHIRError as exc:
        raise at_root(exc, root) from None
    jobs = import_jobs(request)
    base = fhir_base_url(request)
    if ctype in NDJSON_TYPES:
        job_id = await run_in_threadpool(jobs.kick_off, [], base_url=base, upload=body, owner=_caller())
    else:
        job_id = await run_in_threadpool(jobs.kick_off, inputs, base_url=base, owner=_caller())
    return _accepted(f"{base}/$import-poll-status/{job_id}")


@router.get("/$import-poll-status/{job_id}", summary="Progress and result of an $import job")
def import_status(job_id: str, request: Request) -> Response:
    base = fhir_base_url(request)
    return _poll_with_urls(request, _own(import_jobs(request).status(job_id)), "import", "error",
                           lambda file: f"{base}/$import-file/{file}")


def _caller() -> str | None:
    """Who starts a job: the token's issuer and client (or subject); None with authorization off."""
    ctx = context.current()
    return None if ctx.unrestricted else f"{ctx.issuer}|{ctx.client_id or ctx.subject}"


def _own(job: dict | None) -> dict | None:
    """The job, when the caller may see it: a job another client started is no job to it (404); a job id
    is no credential."""
    if job is None:
        return None
    owner, caller = json.loads(job["request"]).get("owner"), _caller()
    return job if owner is None or caller is None or owner == caller else None


def _poll_with_urls(request: Request, job: dict | None, kind: str, items: str, url_of) -> Response:  # noqa: ANN001
    """A job's status: `_poll`'s answer until it is complete, then its result with the file names (its
    `items` list) made into URLs, and requiresAccessToken as this server serves them: with authorization
    on, a file is fetched with a token like any other request."""
    pending = _poll(job, kind)
    if pending is not None:
        return pending
    result = json.loads(job["result"])  # type: ignore[index]
    for item in result.get(items, []):
        item["url"] = url_of(item.pop("file"))
    result["requiresAccessToken"] = request.app.state.settings.auth != "off"
    # No Expires: in Bulk Data it says when the files stop being available, and they stay until DELETE.
    return Response(content=json.dumps(result), status_code=200, media_type="application/json")


@router.delete("/$import-poll-status/{job_id}", summary="Cancel an $import job")
def cancel_import(job_id: str, request: Request) -> Response:
    jobs = import_jobs(request)
    if _own(jobs.status(job_id)) is None or not jobs.cancel(job_id):
        raise not_found("No such import job")
    return Response(status_code=202)


@router.get("/$import-file/{job_id}/{name}", summary="The OperationOutcome NDJSON of an $import job")
def import_file(job_id: str, name: str, request: Request) -> Response:
    jobs = import_jobs(request)
    if not job_id.isalnum() or name != "errors.ndjson" or not is_file(jobs.dir / job_id / name) or \
            _own(jobs.status(job_id)) is None:
        raise not_found("No such file")
    return FileResponse(jobs.dir / job_id / name, media_type=NDJSON)


# --- $export ---------------------------------------------------------------------------------------

# export.html, POST kick-off: `patient` is a valueReference, read as the reference a GET's query carries.
_REFERENCE_PARAMETERS = ("patient",)


def _leave_out_audit_events_unless_scoped(req: ExportRequest) -> None:
    """A wildcard scope covers no AuditEvent (scopes.py); an export is a search of every type it holds, so
    one without an AuditEvent scope holds none (asked for by _type: 403, as the search would be)."""
    if not guard.is_restricted():
        return
    try:
        guard.require("search", AUDIT_TYPE)
    except FHIRError:
        if req.types and AUDIT_TYPE in req.types:
            raise
        req.types = req.types or sorted(t for t in REST_TYPES if t != AUDIT_TYPE)


async def _kick_off_export(request: Request, level: str, group: str | None = None) -> Response:
    response_media_type(request)  # an OperationOutcome in XML is not served: 406 before a job starts
    if "respond-async" not in prefer_header(request):
        raise bad_request("$export needs the header Prefer: respond-async", code="required")
    params = await operation_params(request, references=_REFERENCE_PARAMETERS)
    base = fhir_base_url(request)
    req = parse_export_params(level, params, group, base_url=base, lenient=prefers_lenient_handling(request))
    _leave_out_audit_events_unless_scoped(req)
    job_id = await run_in_threadpool(export_jobs(request).kick_off, req, base_url=base, request_url=str(request.url),
                                     owner=_caller())
    return _accepted(f"{base}/$export-poll-status/{job_id}")


@router.api_route("/$export", methods=["GET", "POST"], summary="System-level Bulk Data export (async)")
async def export_system(request: Request) -> Response:
    return await _kick_off_export(request, "system")


@router.api_route("/Patient/$export", methods=["GET", "POST"], summary="Patient-level Bulk Data export (async)")
async def export_patients(request: Request) -> Response:
    return await _kick_off_export(request, "patient")


@router.api_route("/Group/{group_id}/$export", methods=["GET", "POST"], summary="Group-level Bulk Data export (async)")
async def export_group(group_id: str, request: Request) -> Response:
    return await _kick_off_export(request, "group", group_id)


@router.get("/$export-poll-status/{job_id}", summary="Progress and manifest of an $export job")
def export_status(job_id: str, request: Request) -> Response:
    base = fhir_base_url(request)
    return _poll_with_urls(request, _own(export_jobs(request).status(job_id)), "export", "output",
                           lambda file: f"{base}/$export-file/{job_id}/{file}")


@router.delete("/$export-poll-status/{job_id}", summary="Cancel an $export job (or delete its files)")
def cancel_export(job_id: str, request: Request) -> Response:
    jobs = export_jobs(request)
    if _own(jobs.status(job_id)) is None or not jobs.cancel(job_id):
        raise not_found("No such export job")
    return Response(status_code=202)


@router.get("/$export-file/{job_id}/{name}", summary="One NDJSON file of an $export job")
def export_file(job_id: str, name: str, request: Request) -> Response:
    jobs = export_jobs(request)
    path = jobs.file_path(job_id, name)
    if path is None or _own(jobs.status(job_id)) is None:
        raise not_found("No such file")
    return FileResponse(path, media_type=NDJSON)


def install(app, dependencies=None) -> None:  # noqa: ANN001
    """Include the routes; import jobs a killed server left unfinished (no progress for a minute, however
    soon this server started) are run again in the background (imports are idempotent, so a rerun only
    completes them)."""
    app.include_router(router, dependencies=dependencies or [])
    import threading

    def resume() -> None:
        try:
            from types import SimpleNamespace

            import_jobs(SimpleNamespace(app=app)).resume_until_settled(stale_seconds=60)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - e.g. a database without the bulk tables yet
            import logging

            logging.getLogger("ipt_fhir.bulk_import").warning("could not resume unfinished import jobs",
                                                              exc_info=True)

    threading.Thread(target=resume, name="import-resume", daemon=True).start()
