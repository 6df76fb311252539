"""GET /fhir/metadata: the CapabilityStatement, or with mode=terminology the TerminologyCapabilities (each
built once per base URL; they only change on deploy)."""
from __future__ import annotations

import hashlib
from functools import lru_cache

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ipt_fhir.fhir.jsonio import dump_json, load_stored
from ipt_fhir.fhir.outcome import read_only
from ipt_fhir.services.capability import capability_statement, metadata_mode
from ipt_fhir.services.search import subset_read

from .errors import refuses_writes
from .responses import fhir_base_url, fhir_response
from .security_routes import rest_security_json

router = APIRouter(prefix="/fhir")


@lru_cache(maxsize=8)
def _statement(base_url: str, released: str, canonical_base: str = "", security: str = "") -> bytes:
    from ipt_fhir.services import ipt

    profiles = ipt.conformance.registry(canonical_base).profile_urls() if canonical_base else None
    operations = ipt.capability_operations(canonical_base) if canonical_base else None
    return dump_json(capability_statement(base_url, released=released, supported_profiles=profiles,
                                          extra_operations=operations,
                                          security=load_stored(security.encode()) if security else None))


def capability_json(state, base_url: str) -> bytes:  # noqa: ANN001 - the app's state
    """The CapabilityStatement of the app whose state this is, at `base_url` (also for `GET metadata`
    entries of batches and transactions, services/bundle_interactions.py)."""
    return _statement(base_url, state.started_at, state.settings.canonical_base.rstrip("/"),
                      rest_security_json(state.settings))


@lru_cache(maxsize=8)
def _terminology(base_url: str, released: str) -> bytes:
    from ipt_fhir.services.terminology_capability import terminology_capabilities

    return dump_json(terminology_capabilities(base_url, released=released))


def metadata_json(state, base_url: str, modes: list[str]) -> tuple[str, bytes]:  # noqa: ANN001 - app state
    """(resource type, JSON) of `GET metadata` with these `mode` values, for the route and Bundle entries."""
    if metadata_mode(modes) == "terminology":
        return "TerminologyCapabilities", _terminology(base_url, state.started_at)
    return "CapabilityStatement", capability_json(state, base_url)


@router.api_route("/metadata", methods=["GET", "HEAD"], tags=["capabilities"],
                  summary="CapabilityStatement (mode=terminology: TerminologyCapabilities)")
def metadata(request: Request) -> Response:
    resource_type, body = metadata_json(request.app.state, fhir_base_url(request), request.query_params.getlist("mode"))
    body = subset_read(body, resource_type, request.query_params.multi_items())
    # http.html#capabilities: "An ETag header SHOULD be returned with the Response. The value of the ETag
    # header SHALL change if the returned resource changes." A digest of what is returned does both, and
    # lets a client that holds it ask with If-None-Match (RFC 9110 13.1.2: weak comparison).
    etag = f'W/"{hashlib.sha256(body).hexdigest()[:32]}"'
    if _client_holds(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers={"ETag": etag})
    return fhir_response(request, body, headers={"ETag": etag})


def _client_holds(if_none_match: str | None, etag: str) -> bool:
    """Whether an If-None-Match list names `etag` (weak comparison) or is `*` (RFC 9110 13.1.2): 304."""
    if if_none_match is None:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or etag.removeprefix("W/") in tags


@router.api_route("/metadata", methods=["POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
@refuses_writes
def metadata_is_read_only() -> Response:
    """`metadata` is no resource type: a write there is a method the path does not allow (RFC 9110
    15.5.6), not a create of an unknown type. Routed ahead of rest_routes' `/{type}` (app.py)."""
    raise read_only("The CapabilityStatement at /metadata can only be read")
