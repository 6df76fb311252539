"""The RESTful interactions on /fhir: read, vread, create, update, patch, delete (plain and
conditional) and history. Each route: parse → one service call → respond."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.convertors import StringConvertor, register_url_convertor

from ipt_fhir.fhir.outcome import bad_request, information, operation_outcome
from ipt_fhir.fhir.patch import JSON_PATCH

from . import binary
from .body import read_json_body
from .deps import HistoryDep, ResourcesDep
from ipt_fhir.services.resources import etag_versions, if_match_versions
from ipt_fhir.services.search import subset_read
from ipt_fhir.store.loop_commit import NOT_RUN

from .negotiation import response_media_type
from .responses import (
    fhir_base_url,
    fhir_response,
    not_modified,
    prefer_return,
    version_headers,
    write_response,
)



class _SegmentConvertor(StringConvertor):
    """A type or id segment: anything but an operation (`$export`) or a reserved name (`_search`).
    These routes therefore never shadow /fhir/$import, /fhir/Patient/$export and the like, and can be
    tried early (see app.py)."""

    regex = "[^/$_][^/]*"


register_url_convertor("fhirsegment", _SegmentConvertor())

router = APIRouter(prefix="/fhir")

_NON_CRITERIA = {"_format", "_pretty"}


def _criteria(request: Request) -> list[tuple[str, str]]:
    return [(k, v) for k, v in request.query_params.multi_items() if k not in _NON_CRITERIA]


def _if_none_exist(request: Request) -> str | list[tuple[str, str]] | None:
    """A create's conditional criteria: the If-None-Exist header (http.html#ccreate), or search parameters
    in the URL, `POST [type]?criteria`, as some servers take them and their clients send them (fhirpy's
    get_or_create): ignored, they would create a duplicate every time. Both at once is a 400."""
    header = request.headers.get("if-none-exist")
    if not request.scope.get("query_string"):
        return header
    criteria = _criteria(request)
    if not criteria:
        return header
    if header is not None:
        raise bad_request("Conditional create criteria are given twice, in If-None-Exist and in the URL: give "
                          "them once", "If-None-Exist", code="invalid")
    return criteria  # already parsed: services.resources.parse_criteria takes the pairs as they are


# --- history (registered before /{type}/{id} so '_history' is never taken for an id) -----------

@router.api_route("/_history", methods=["GET", "HEAD"], tags=["history"], summary="System history")
def system_history(request: Request, history: HistoryDep) -> Response:
    body = history.history(request.query_params.multi_items(), base_url=fhir_base_url(request))
    return fhir_response(request, body)


@router.api_route("/{resource_type:fhirsegment}/_history", methods=["GET", "HEAD"], tags=["history"], summary="Type history")
def type_history(resource_type: str, request: Request, history: HistoryDep) -> Response:
    body = history.history(request.query_params.multi_items(), base_url=fhir_base_url(request),
                           resource_type=resource_type)
    return fhir_response(request, body)


@router.api_route("/{resource_type:fhirsegment}/{resource_id:fhirsegment}/_history", methods=["GET", "HEAD"], tags=["history"], summary="Instance history")
def instance_history(resource_type: str, resource_id: str, request: Request, history: HistoryDep) -> Response:
    body = history.history(request.query_params.multi_items(), base_url=fhir_base_url(request),
                           resource_type=resource_type, resource_id=resource_id)
    return fhir_response(request, body)


# --- read, vread -------------------------------------------------------------------------------

@router.api_route("/{resource_type:fhirsegment}/{resource_id:fhirsegment}", methods=["GET", "HEAD"], tags=["read"], summary="Read")
async def read(resource_type: str, resource_id: str, request: Request, resources: ResourcesDep) -> Response:
    # On embedded SQLite a read by id is a ~40 µs local call: run it inline rather than pay a thread
    # hop. A PostgreSQL round trip can take longer, so it goes to the thread pool like other I/O.
    sqlite = resources.db.dialect == "sqlite"
    if sqlite:
        stored = resources.read(resource_type, resource_id)
    else:
        stored = await run_in_threadpool(resources.read, resource_type, resource_id)
    previous = None
    if stored.version_id > 1 and "if-modified-since" in request.headers and "if-none-match" not in request.headers:
        # An HTTP-date cannot tell two versions of one second apart (services.resources.unchanged)
        previous = resources.updated_before(stored) if sqlite else \
            await run_in_threadpool(resources.updated_before, stored)
    return read_response(request, stored, previous)


@router.api_route("/{resource_type:fhirsegment}/{resource_id:fhirsegment}/_history/{version_id}", methods=["GET", "HEAD"],
                  tags=["read"], summary="Version read (vread)")
def vread(resource_type: str, resource_id: str, version_id: str, request: Request,
          resources: ResourcesDep) -> Response:
    stored = resources.vread(resource_type, resource_id, version_id)
    return read_response(request, stored)  # a version never changes, but a client may hold it already


def read_response(request: Request, stored, previous_updated=None) -> Response:  # noqa: ANN001
    """A read's or vread's answer: 304 for a conditional read that holds, else the Binary's native
    content or the resource, with the version's ETag and Last-Modified. `previous_updated`: for a read of
    the current version, its predecessor's lastUpdated (services.resources.unchanged)."""
    headers = version_headers(stored)
    if not_modified(request, stored, previous_updated):
        return Response(status_code=304, headers=headers)
    if stored.resource_type == "Binary" and binary.wants_native(request):
        native = binary.native_response(request, stored, headers)
        if native is not None:
            return native
    return fhir_response(request, _subset(request, stored), 200, headers)


def _subset(request: Request, stored) -> bytes:  # noqa: ANN001
    if not request.scope.get("query_string") or (
            "_summary" not in request.query_params and "_elements" not in request.query_params):
        return stored.content
    return subset_read(stored.content, stored.resource_type, request.query_params.multi_items())


# --- create, update, patch, delete ---------------------------------------------------------------
# A small write on embedded SQLite is stored on the event loop when the writer is free, like a read by
# id: the thread hop costs a create about a tenth of its CPU and the wake-up of two threads. It is
# checked and validated first, without the writer, so background work that needs the writer (moving
# pending index rows, checkpoints) fits in between; the small writes that reach the store within a few
# turns of the loop then share one commit (store/loop_commit.py). A SQLite commit is not always bounded
# CPU work, though: the first write after a checkpoint has copied the whole WAL syncs the WAL's new
# header to disk, which on the loop would stop every request (p99 of create went from 12-24 to 25-37 ms
# at concurrency 1 when all writes ran inline). The checkpointer therefore restarts the WAL itself and
# pauses loop writes for a checkpoint's last pass, before it does (store/checkpoint.py). A create or
# update that finds the writer busy or paused is stored in the thread pool; one that is large or
# conditional runs there whole, and so do patches, deletes and every write on PostgreSQL.
INLINE_WRITE_MAX_BODY = 16 * 1024  # bytes: validating a larger body would hold up the loop too long


async def _run_write(request: Request, resources: ResourcesDep, checked, *args, **kwargs):  # noqa: ANN001, ANN202
    """`checked(*args, **kwargs)` validates a write and returns the step that stores it."""
    body = await request.body()  # already read: the handler parsed it
    small = len(body) <= INLINE_WRITE_MAX_BODY and not kwargs.get("if_none_exist")  # no search inside
    loop_commit = resources.db.loop_commit
    if not small or loop_commit is None:
        return await run_in_threadpool(lambda: checked(*args, **kwargs)())
    store = checked(*args, **kwargs)
    result = await loop_commit.run(store.unit)
    if result is NOT_RUN:
        return await run_in_threadpool(store)
    return result


async def _resource_body(request: Request, resource_type: str, resource_id: str | None = None) -> object:
    """The resource a create or update sends: its JSON, or for Binary also its native content."""
    if resource_type == "Binary" and binary.is_native_body(request):
        response_media_type(request)  # a 406 before the write, as for JSON bodies
        return await binary.binary_from_body(request, resource_id)
    body, _ = await read_json_body(request)
    return body


@router.post("/{resource_type:fhirsegment}", tags=["write"], summary="Create (conditional with If-None-Exist)")
async def create(resource_type: str, request: Request, resources: ResourcesDep) -> Response:
    if_none_exist = _if_none_exist(request)
    body = await _resource_body(request, resource_type)
    result = await _run_write(
        request, resources, resources.checked_create, resource_type, body,
        if_none_exist=if_none_exist, base_url=fhir_base_url(request))
    return write_response(request, result.version, result.status, result.issues)


@router.put("/{resource_type:fhirsegment}/{resource_id:fhirsegment}", tags=["write"], summary="Update (or create with this id)")
async def update(resource_type: str, resource_id: str, request: Request, resources: ResourcesDep) -> Response:
    body = await _resource_body(request, resource_type, resource_id)
    result = await _run_write(
        request, resources, resources.checked_update, resource_type, resource_id, body,
        if_match=if_match_versions(request.headers.get("if-match")),
        if_none_match=etag_versions(request.headers.get("if-none-match")))
    return write_response(request, result.version, result.status, result.issues)


@router.put("/{resource_type:fhirsegment}", tags=["write"], summary="Conditional update (PUT [type]?criteria)")
async def conditional_update(resource_type: str, request: Request, resources: ResourcesDep) -> Response:
    body, _ = await read_json_body(request)
    result = await run_in_threadpool(
        resources.conditional_update, resource_type, _criteria(request), body,
        if_match=if_match_versions(request.headers.get("if-match")),
        if_none_match=etag_versions(request.headers.get("if-none-match")), base_url=fhir_base_url(request))
    return write_response(request, result.version, result.status, result.issues)


@router.patch("/{resource_type:fhirsegment}/{resource_id:fhirsegment}", tags=["write"], summary="Patch (JSON Patch or FHIRPath Patch)")
async def patch(resource_type: str, resource_id: str, request: Request, resources: ResourcesDep) -> Response:
    body, media = await read_json_body(request, allow=(JSON_PATCH,))
    result = await run_in_threadpool(  # its cost follows the stored resource's size, not the body's
        resources.patch, resource_type, resource_id, body, media,
        if_match=if_match_versions(request.headers.get("if-match")))
    return write_response(request, result.version, result.status, result.issues)


@router.patch("/{resource_type:fhirsegment}", tags=["write"], summary="Conditional patch (PATCH [type]?criteria)")
async def conditional_patch(resource_type: str, request: Request, resources: ResourcesDep) -> Response:
    body, media = await read_json_body(request, allow=(JSON_PATCH,))
    result = await run_in_threadpool(
        resources.conditional_patch, resource_type, _criteria(request), body, media,
        if_match=if_match_versions(request.headers.get("if-match")), base_url=fhir_base_url(request))
    return write_response(request, result.version, result.status, result.issues)


@router.delete("/{resource_type:fhirsegment}/{resource_id:fhirsegment}", tags=["write"], summary="Delete")
def delete(resource_type: str, resource_id: str, request: Request, resources: ResourcesDep) -> Response:
    response_media_type(request)  # a 406 must come before the delete, not after it
    result = resources.delete(resource_type, resource_id, if_match=if_match_versions(request.headers.get("if-match")))
    return _delete_response(request, result.deleted, f"{resource_type}/{resource_id}")


@router.delete("/{resource_type:fhirsegment}", tags=["write"], summary="Conditional delete (DELETE [type]?criteria)")
def conditional_delete(resource_type: str, request: Request, resources: ResourcesDep) -> Response:
    response_media_type(request)
    result = resources.conditional_delete(resource_type, _criteria(request), base_url=fhir_base_url(request),
                                          if_match=if_match_versions(request.headers.get("if-match")))
    return _delete_response(request, result.deleted, f"{resource_type} resources matching the criteria")


def _delete_response(request: Request, deleted: int, what: str) -> Response:
    if prefer_return(request) == "OperationOutcome":
        message = f"Deleted {deleted} resource(s)" if deleted else f"Nothing to delete: {what} did not exist"
        return fhir_response(request, operation_outcome([information(message)]), 200)
    return Response(status_code=204)
