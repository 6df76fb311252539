"""IPT routes: PlanDefinition/[id]/$apply, CarePlan/[id]/$ipt-progress, and the server's own
conformance resources (read, vread, history, search merged with stored ones; writes refused)."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor

from ipt_fhir.domain.apply import parse_apply_parameters
from ipt_fhir.fhir.jsonio import load_stored
from ipt_fhir.fhir.outcome import FHIRError, bad_request, not_found
from ipt_fhir.services import search as search_service
from ipt_fhir.services.ipt import conformance as conf

from .body import read_json_body
from .deps import DatabaseDep
from .responses import http_date, fhir_base_url, fhir_response, prefer_return, prefers_strict_handling


class _Pattern(Convertor):
    def __init__(self, regex: str) -> None:
        self.regex = regex

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("iptconftype", _Pattern(conf.TYPE_PATTERN))
register_url_convertor("iptconfid", _Pattern(conf.RESERVED_ID_PATTERN))

router = APIRouter(prefix="/fhir")


# --- operations ----------------------------------------------------------------------------------

@router.api_route("/PlanDefinition/{plan_id}/$apply", methods=["GET", "POST"], tags=["IPT"],
                  summary="Apply an IPT protocol: CarePlan, course ServiceRequest and planned sessions")
async def apply(plan_id: str, request: Request) -> Response:
    """Parameters: subject (Patient reference), practitioner, start (date), sessionCount, weekday,
    store (true: also store the resources in one transaction; POST only). Answers with the transaction
    Bundle, or with store=true the transaction-response Bundle."""
    if request.method == "POST":
        body, _ = await read_json_body(request)
        parsed = parse_apply_parameters(body)
    else:
        parsed = parse_apply_parameters([(k, v) for k, v in request.query_params.multi_items()
                                         if k not in ("_format", "_pretty")])
        if parsed.store:
            raise bad_request("store=true changes the server: use POST", "store", code="value")
    service = request.app.state.ipt_service
    bundle = await run_in_threadpool(service.apply, plan_id, parsed)
    if not parsed.store:
        return fhir_response(request, bundle)
    from .bundle_routes import bundle_service

    result = await run_in_threadpool(bundle_service(request).process, bundle, base_url=fhir_base_url(request),
                                     prefer=prefer_return(request))
    return fhir_response(request, result, 200)


@router.get("/CarePlan/{careplan_id}/$ipt-progress", tags=["IPT"], summary="Progress of an IPT care plan")
def ipt_progress(careplan_id: str, request: Request) -> Response:
    return fhir_response(request, request.app.state.ipt_service.progress(careplan_id))


# --- the server's conformance resources (read-only, from memory) -------------------------------

def _registry(request: Request) -> conf.ConformanceRegistry:
    return request.app.state.ipt_conformance


def _owned(request: Request, resource_type: str, resource_id: str) -> bytes:
    content = _registry(request).content(resource_type, resource_id)
    if content is None:
        raise not_found(f"{resource_type}/{resource_id} is not known")
    return content


def _headers(request: Request) -> dict[str, str]:
    return {"ETag": 'W/"1"', "Last-Modified": http_date(conf.LOADED_AT)}


@router.api_route("/{resource_type:iptconftype}/{resource_id:iptconfid}", methods=["GET", "HEAD"],
                  tags=["IPT"], summary="Read an IPT conformance resource")
def read_conformance(resource_type: str, resource_id: str, request: Request) -> Response:
    content = _owned(request, resource_type, resource_id)
    headers = _headers(request)
    if request.headers.get("if-none-match") == headers["ETag"]:
        return Response(status_code=304, headers=headers)
    return fhir_response(request, content, 200, headers)


@router.api_route("/{resource_type:iptconftype}/{resource_id:iptconfid}/_history/{version_id}",
                  methods=["GET", "HEAD"], tags=["IPT"], include_in_schema=False)
def vread_conformance(resource_type: str, resource_id: str, version_id: str, request: Request) -> Response:
    content = _owned(request, resource_type, resource_id)
    if version_id != "1":
        raise not_found(f"{resource_type}/{resource_id} has no version '{version_id}'")
    return fhir_response(request, content, 200, _headers(request))


@router.get("/{resource_type:iptconftype}/{resource_id:iptconfid}/_history", tags=["IPT"], include_in_schema=False)
def history_conformance(resource_type: str, resource_id: str, request: Request) -> Response:
    resource = load_stored(_owned(request, resource_type, resource_id))
    base = fhir_base_url(request)
    return fhir_response(request, {
        "resourceType": "Bundle", "type": "history", "total": 1,
        "link": [{"relation": "self", "url": f"{base}/{resource_type}/{resource_id}/_history"}],
        "entry": [{"fullUrl": f"{base}/{resource_type}/{resource_id}", "resource": resource,
                   "request": {"method": "POST", "url": resource_type},
                   "response": {"status": "201 Created", "etag": 'W/"1"'}}]})


@router.api_route("/{resource_type:iptconftype}/{resource_id:iptconfid}", methods=["PUT", "PATCH", "DELETE"],
                  tags=["IPT"], include_in_schema=False)
def write_conformance(resource_type: str, resource_id: str, request: Request) -> Response:
    raise FHIRError.of(405, "not-supported",
                       f"{resource_type}/{resource_id} is published by this server and is read-only", resource_type)


@router.api_route("/{resource_type:iptconftype}", methods=["GET"], tags=["IPT"],
                  summary="Search conformance resources (the server's IPT ones and stored ones)")
@router.api_route("/{resource_type:iptconftype}/_search", methods=["POST"], include_in_schema=False)
async def search_conformance(resource_type: str, request: Request, db: DatabaseDep) -> Response:
    from .search_routes import _params, _request_url

    base = fhir_base_url(request)
    params = await _params(request)
    stored = await run_in_threadpool(search_service.search, db, resource_type, params, base_url=base,
                                     request_url=_request_url(request, base, params),
                                     strict=prefers_strict_handling(request))
    ours = _registry(request).search(resource_type, params)
    if not ours or any(n == "_page" for n, _ in params):
        return fhir_response(request, stored)
    return fhir_response(request, _merge(load_stored(stored), ours, base, params))


def _merge(bundle: dict, ours: list[dict], base: str, params: list[tuple[str, str]]) -> dict:
    """The first page of the stored search with the server's own matches in front (they are few)."""
    if "total" in bundle:
        bundle["total"] += len(ours)
    summary = dict(params).get("_summary")
    count = dict(params).get("_count")
    if summary == "count" or count == "0":
        return bundle
    entries = [{"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": "match"}}
               for r in ours]
    existing = bundle.get("entry") or []
    outcome = [e for e in existing if (e.get("search") or {}).get("mode") == "outcome"]
    rest = [e for e in existing if (e.get("search") or {}).get("mode") != "outcome"]
    bundle["entry"] = outcome + entries + rest
    return bundle
