"""Search on /fhir: type, system and Patient-compartment search, POST _search, Patient $everything
(instance and type level). Each route: parse the request -> one service call -> the searchset Bundle bytes."""
from __future__ import annotations

from collections.abc import Collection
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from ipt_fhir.fhir.outcome import FHIRError, error
from ipt_fhir.fhir.parameters import primitive_parameters
from ipt_fhir.services import search as search_service
from ipt_fhir.store.database import Database

from .body import read_json_body
from .deps import DatabaseDep
from .negotiation import body_media_type
from .responses import fhir_base_url, fhir_response, prefers_strict_handling

from starlette.convertors import Convertor, register_url_convertor


class _ResourceTypeConvertor(Convertor):
    """Only names shaped like resource types, so /fhir/_history, /fhir/metadata and /Patient/x/_history
    fall through to the routers that own them."""

    regex = "[A-Z][A-Za-z]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("fhirtype", _ResourceTypeConvertor())

router = APIRouter(prefix="/fhir")


def audit_url(request: Request, base: str, params: list[tuple[str, str]]) -> str:
    """The search as requested, for the audit record: a POST _search's form parameters are part of it."""
    path = request.url.path
    rel = path[path.index("/fhir") + len("/fhir"):] if "/fhir" in path else path
    query = urlencode(params) if request.method == "POST" else request.url.query
    return base + rel + (f"?{query}" if query else "")


async def search_params(request: Request) -> list[tuple[str, str]]:
    params = list(request.query_params.multi_items())
    if request.method == "POST":
        body = await request.body()
        if body:
            if body_media_type(request) != _FORM:
                raise FHIRError(415, [error("not-supported",
                                            "POST _search needs an application/x-www-form-urlencoded body")])
            try:
                params += parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
            except UnicodeDecodeError:
                raise FHIRError(400, [error("structure", "The form body is not UTF-8")]) from None
    return params


_FORM = "application/x-www-form-urlencoded"


async def operation_params(request: Request, *, references: Collection[str] = ()) -> list[tuple[str, str]]:
    """The parameters of an operation invoked with GET or POST. A POST's body is a Parameters resource
    (http://hl7.org/fhir/R4/operations.html#request: "Servers SHALL support POST method for all
    operations"); a form-encoded or empty body, as POST _search takes, is still read as before.
    `references` names the parameters the operation takes as a Reference: in the body each is a
    valueReference, read as its reference, the text the query string carries it as."""
    if request.method != "POST" or not await request.body() or body_media_type(request) == _FORM:
        return await search_params(request)
    body, _ = await read_json_body(request)
    return list(request.query_params.multi_items()) + primitive_parameters(body, references)


@router.api_route("", methods=["GET", "HEAD"], tags=["search"], summary="System search (_type limits the types)")
@router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)  # [base]/?params, as clients write it
@router.api_route("/_search", methods=["POST"], tags=["search"], summary="System search (form-encoded body)")
async def system_search(request: Request, db: DatabaseDep) -> Response:
    base = fhir_base_url(request)
    params = await search_params(request)
    body = await run_in_threadpool(search_service.search, db, None, params, base_url=base,
                                   request_url=audit_url(request, base, params),
                                   strict=prefers_strict_handling(request))
    return fhir_response(request, body)


@router.api_route("/Patient/$everything", methods=["GET", "POST"], tags=["search"],
                  summary="Patient $everything of every patient (start, end, _since, _type, _count)")
async def patients_everything(request: Request, db: DatabaseDep) -> Response:
    base = fhir_base_url(request)
    params = await operation_params(request)
    body = await run_in_threadpool(search_service.everything, db, None, params, base_url=base,
                                   request_url=audit_url(request, base, params),
                                   strict=prefers_strict_handling(request))
    return fhir_response(request, body)


@router.api_route("/Patient/{patient_id}/$everything", methods=["GET", "POST"], tags=["search"],
                  summary="Patient $everything (start, end, _since, _type, _count)")
async def patient_everything(patient_id: str, request: Request, db: DatabaseDep) -> Response:
    base = fhir_base_url(request)
    params = await operation_params(request)
    body = await run_in_threadpool(search_service.everything, db, patient_id, params, base_url=base,
                                   request_url=audit_url(request, base, params),
                                   strict=prefers_strict_handling(request))
    return fhir_response(request, body)


@router.api_route("/{resource_type:fhirtype}", methods=["GET", "HEAD"], tags=["search"], summary="Search")
@router.api_route("/{resource_type:fhirtype}/_search", methods=["POST"], tags=["search"],
                  summary="Search (form-encoded body)")
async def type_search(resource_type: str, request: Request, db: DatabaseDep) -> Response:
    base = fhir_base_url(request)
    params = await search_params(request)
    body = await run_in_threadpool(search_service.search, db, resource_type, params, base_url=base,
                                   request_url=audit_url(request, base, params),
                                   strict=prefers_strict_handling(request))
    return fhir_response(request, body)


@router.api_route("/Patient/{patient_id}/{resource_type:fhirtype}", methods=["GET", "HEAD"], tags=["search"],
                  summary="Patient compartment search")
@router.api_route("/Patient/{patient_id}/{resource_type:fhirtype}/_search", methods=["POST"], tags=["search"],
                  summary="Patient compartment search (form-encoded body)")
async def compartment_search(patient_id: str, resource_type: str, request: Request, db: DatabaseDep) -> Response:
    return await _in_compartment(patient_id, resource_type, request, db)


@router.api_route("/Patient/{patient_id}/*", methods=["GET", "HEAD"], tags=["search"],
                  summary="Patient compartment search across its types (_type limits them)")
@router.api_route("/Patient/{patient_id}/_search", methods=["POST"], tags=["search"],
                  summary="Patient compartment search across its types (form-encoded body)")
async def compartment_search_all_types(patient_id: str, request: Request, db: DatabaseDep) -> Response:
    return await _in_compartment(patient_id, None, request, db)


async def _in_compartment(patient_id: str, resource_type: str | None, request: Request, db: Database) -> Response:
    base = fhir_base_url(request)
    params = await search_params(request)
    body = await run_in_threadpool(search_service.search, db, resource_type, params, base_url=base,
                                   request_url=audit_url(request, base, params),
                                   strict=prefers_strict_handling(request),
                                   compartment=("Patient", patient_id))
    return fhir_response(request, body)
