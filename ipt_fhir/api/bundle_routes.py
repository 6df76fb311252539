"""POST /fhir: batch and transaction Bundles (http://hl7.org/fhir/R4/http.html#transaction)."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from ipt_fhir.fhir.outcome import FHIRError
from ipt_fhir.services.bundle_interactions import EntryInteractions
from ipt_fhir.services.bundle_processing import BundleService

from .body import read_json_body
from .errors import allowed_methods
from .metadata_routes import metadata_json
from .responses import fhir_base_url, fhir_response, prefer_return, prefers_strict_handling

router = APIRouter(prefix="/fhir")


def bundle_service(request: Request) -> BundleService:
    state = request.app.state
    service = getattr(state, "bundle_service", None)
    if service is None:
        interactions = EntryInteractions(state.database, settings=state.settings, ipt=state.ipt_service,
                                         capability=lambda base_url, modes: metadata_json(state, base_url, modes)[1])
        service = state.bundle_service = BundleService(
            state.database, state.resource_service, max_entries=state.settings.max_bundle_entries,
            interactions=interactions)
    return service


@router.post("", tags=["batch/transaction"], summary="Batch or transaction Bundle")
@router.post("/", include_in_schema=False)
async def batch_or_transaction(request: Request) -> Response:
    body, _ = await read_json_body(request)
    service = bundle_service(request)
    try:
        result = await run_in_threadpool(service.process, body, base_url=fhir_base_url(request),
                                         prefer=prefer_return(request), strict_search=prefers_strict_handling(request))
    except FHIRError as exc:
        if exc.status == 405:
            # A transaction fails with the status of the entry that failed it, an entry's 405 too, but that
            # entry's Allow named its own URL (bundle_processing._entry_headers drops it); RFC 9110 15.5.6
            # wants a 405's Allow to name what this URL serves.
            exc.headers["Allow"] = ", ".join(allowed_methods(request))
        raise
    return fhir_response(request, result, 200)
