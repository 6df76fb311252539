"""$meta (system, type, instance, version), $meta-add and $meta-delete (instance, version): the profiles,
tags and security labels of resources (services/meta_operations.py). Answers are Parameters with
`return` (Meta)."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from ipt_fhir.fhir.jsonio import dump_json
from ipt_fhir.services.meta_operations import MetaOperations, meta_parameters, no_parameters

from . import rest_routes  # noqa: F401 - registers the `fhirsegment` path convertor used below
from .body import read_json_body
from .responses import fhir_response

router = APIRouter(prefix="/fhir", tags=["operations"])
_READ = ["GET", "POST"]  # $meta does not change anything (affectsState false): GET or POST


def _operations(request: Request) -> MetaOperations:
    return MetaOperations(request.app.state.database)


async def _no_parameters(request: Request) -> None:
    if request.method == "POST" and await request.body():
        no_parameters((await read_json_body(request))[0])


def _answer(request: Request, meta: dict) -> Response:
    return fhir_response(request, dump_json(meta_parameters(meta)))


@router.api_route("/$meta", methods=_READ, summary="$meta (system)")
async def meta_system(request: Request) -> Response:
    """The profiles, tags and security labels the server's resources carry, as Parameters `return` (Meta)."""
    await _no_parameters(request)
    return _answer(request, await run_in_threadpool(_operations(request).in_use, None))


@router.api_route("/{resource_type:fhirsegment}/$meta", methods=_READ, summary="$meta (type level)")
async def meta_type(resource_type: str, request: Request) -> Response:
    """The profiles, tags and security labels the type's resources carry, as Parameters `return` (Meta)."""
    await _no_parameters(request)
    return _answer(request, await run_in_threadpool(_operations(request).in_use, resource_type))


@router.api_route("/{resource_type:fhirsegment}/{resource_id:fhirsegment}/$meta", methods=_READ, summary="$meta")
@router.api_route("/{resource_type:fhirsegment}/{resource_id:fhirsegment}/_history/{version_id}/$meta",
                  methods=_READ, summary="$meta of a version")
async def meta_instance(resource_type: str, resource_id: str, request: Request, version_id: str | None = None) -> Response:
    """The meta of the resource (or of the version), as Parameters `return` (Meta)."""
    await _no_parameters(request)
    meta = await run_in_threadpool(_operations(request).instance, resource_type, resource_id, version_id)
    return _answer(request, meta)


# POST only (a GET is a 405 naming POST): these two change the resource.
@router.post("/{resource_type:fhirsegment}/{resource_id:fhirsegment}/$meta-add", summary="$meta-add")
@router.post("/{resource_type:fhirsegment}/{resource_id:fhirsegment}/_history/{version_id}/$meta-add",
             summary="$meta-add on a version")
async def meta_add(resource_type: str, resource_id: str, request: Request, version_id: str | None = None) -> Response:
    """Adds the profiles, tags and security labels of the Parameters `meta` (a tag or label is the same
    when system and code are); the version keeps its versionId and lastUpdated. Answers the resulting meta."""
    body, _ = await read_json_body(request)
    return _answer(request, await run_in_threadpool(_operations(request).add, resource_type, resource_id, body,
                                                    version_id))


@router.post("/{resource_type:fhirsegment}/{resource_id:fhirsegment}/$meta-delete", summary="$meta-delete")
@router.post("/{resource_type:fhirsegment}/{resource_id:fhirsegment}/_history/{version_id}/$meta-delete",
             summary="$meta-delete on a version")
async def meta_delete(resource_type: str, resource_id: str, request: Request, version_id: str | None = None) -> Response:
    """Removes the profiles, tags and security labels of the Parameters `meta`; the version keeps its
    versionId and lastUpdated. Answers the resulting meta."""
    body, _ = await read_json_body(request)
    return _answer(request, await run_in_threadpool(_operations(request).delete, resource_type, resource_id, body,
                                                    version_id))
