"""IPT routes: PlanDefinition/[id]/$apply, CarePlan/[id]/$ipt-progress, and the refusal of writes to the
server's own conformance resources."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor

from ipt_fhir.domain.apply import parse_apply_parameters
from ipt_fhir.fhir.outcome import bad_request, read_only
from ipt_fhir.services.ipt import conformance as conf

from .body import read_json_body
from .errors import refuses_writes
from .responses import fhir_base_url, fhir_response, prefer_return, prefers_strict_handling
from .search_routes import operation_params


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
                                     prefer=prefer_return(request), strict_search=prefers_strict_handling(request))
    return fhir_response(request, result, 200)


@router.api_route("/CarePlan/{careplan_id}/$ipt-progress", methods=["GET", "POST"], tags=["IPT"],
                  summary="Progress of an IPT care plan")
async def ipt_progress(careplan_id: str, request: Request) -> Response:
    """GET and POST both (OperationDefinition ipt-progress: affectsState false). It defines no input
    parameters; a POST body must still be a Parameters resource, as for any operation."""
    await operation_params(request)
    progress = await run_in_threadpool(request.app.state.ipt_service.progress, careplan_id)
    return fhir_response(request, progress)


# --- the server's conformance resources ------------------------------------------------------------
# Stored at start-up and read, searched and versioned like any resource (services/ipt/publish.py); this
# route only refuses writes to their ids, so that a 405's Allow names GET and HEAD alone.

@router.api_route("/{resource_type:iptconftype}/{resource_id:iptconfid}", methods=["PUT", "PATCH", "DELETE"],
                  tags=["IPT"], include_in_schema=False)
@refuses_writes
def write_conformance(resource_type: str, resource_id: str, request: Request) -> Response:
    raise read_only(f"{resource_type}/{resource_id} is published by this server and is read-only", resource_type)
