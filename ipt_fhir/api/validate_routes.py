"""POST [type]/$validate and POST|GET [type]/[id]/$validate: always 200 with an OperationOutcome
when the request itself could be understood; problems in the resource are issues, not HTTP errors."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from ipt_fhir.fhir.outcome import operation_outcome
from ipt_fhir.services.validate_operation import ValidateOperation, ValidateRequest, parse_validate_body

from .body import read_json_body
from .responses import fhir_response

router = APIRouter(prefix="/fhir", tags=["operations"])


def _operation(request: Request) -> ValidateOperation:
    return ValidateOperation(request.app.state.database)


@router.post("/{resource_type}/$validate", summary="$validate a resource (body: the resource or a Parameters)")
async def validate_type(resource_type: str, request: Request) -> Response:
    body, _ = await read_json_body(request)
    parsed = parse_validate_body(body, dict(request.query_params))
    issues = await run_in_threadpool(_operation(request).validate, resource_type, parsed)
    return fhir_response(request, operation_outcome(issues))


@router.post("/{resource_type}/{resource_id}/$validate", summary="$validate against an existing instance")
async def validate_instance(resource_type: str, resource_id: str, request: Request) -> Response:
    body, _ = await read_json_body(request)
    parsed = parse_validate_body(body, dict(request.query_params))
    issues = await run_in_threadpool(_operation(request).validate, resource_type, parsed, resource_id)
    return fhir_response(request, operation_outcome(issues))


@router.get("/{resource_type}/{resource_id}/$validate", summary="$validate the stored instance")
def validate_stored(resource_type: str, resource_id: str, request: Request) -> Response:
    parsed = ValidateRequest(None, request.query_params.get("mode"), request.query_params.get("profile"))
    return fhir_response(request, operation_outcome(_operation(request).validate(resource_type, parsed, resource_id)))
