"""FHIR responses: bodies as bytes (never re-validated by FastAPI), with ETag, Last-Modified,
Location and the representation asked for by `Prefer: return=`."""
from __future__ import annotations

import re
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from fastapi import Request
from fastapi.responses import Response

from ipt_fhir.fhir.jsonio import dump_json, load_stored
from ipt_fhir.fhir.outcome import Issue, operation_outcome
from ipt_fhir.http_dates import http_date
from ipt_fhir.services.resources import etag_versions, unchanged
from ipt_fhir.store.resources import StoredVersion

from .base_url import fhir_base_of
from .negotiation import response_media_type, wants_pretty


def fhir_base_url(request: Request) -> str:
    """The base the client called (…/fhir), honouring a reverse proxy's X-Forwarded-* headers."""
    return fhir_base_of(request.scope)


def fhir_response(request: Request, body: bytes | dict | None, status: int = 200,
                  headers: dict[str, str] | None = None) -> Response:
    media_type = response_media_type(request)
    if isinstance(body, dict):
        body = dump_json(body, pretty=wants_pretty(request))
    elif body is not None and wants_pretty(request):
        body = dump_json(load_stored(body), pretty=True)
    content_type = f"{media_type}; charset=utf-8" if body is not None else None
    if request.method == "HEAD" and body is not None:
        # The headers a GET would send (RFC 9110 9.3.2), Content-Type and Content-Length included; no body.
        headers = {**(headers or {}), "Content-Length": str(len(body))}
        body = None
    return Response(content=body, status_code=status, headers=headers, media_type=content_type)


def version_headers(v: StoredVersion) -> dict[str, str]:
    return {"ETag": f'W/"{v.version_id}"', "Last-Modified": http_date(v.last_updated)}


def location(request: Request, v: StoredVersion) -> str:
    return f"{fhir_base_url(request)}/{v.resource_type}/{v.id}/_history/{v.version_id}"


def prefer_header(request: Request) -> str:
    """Every Prefer header line as one list: RFC 7240 lets a client send its preferences in several."""
    return ", ".join(request.headers.getlist("prefer"))


def prefer_return(request: Request) -> str:
    match = _PREFER_RETURN.search(prefer_header(request))
    if match and match.group(1) in ("minimal", "representation", "OperationOutcome"):
        return match.group(1)
    return "representation"


def prefer_handling(request: Request) -> str | None:
    """Prefer: handling=strict | lenient (search.html#errors), as sent, lower-cased."""
    match = _PREFER_HANDLING.search(prefer_header(request))
    return match.group(1).lower() if match else None


def prefers_strict_handling(request: Request) -> bool:
    return prefer_handling(request) == "strict"


def prefers_lenient_handling(request: Request) -> bool:
    return prefer_handling(request) == "lenient"


_PREFER_RETURN = re.compile(r'(?:^|[,;\s])return\s*=\s*"?([A-Za-z]+)')
_PREFER_HANDLING = re.compile(r'(?:^|[,;\s])handling\s*=\s*"?([A-Za-z]+)')


def write_response(request: Request, v: StoredVersion, status: int, issues: list[Issue],
                   *, with_location: bool = True) -> Response:
    headers = version_headers(v)
    if with_location:
        headers["Location"] = location(request, v)
    preference = prefer_return(request)
    if preference == "minimal":
        return fhir_response(request, None, status, headers)
    if preference == "OperationOutcome":
        return fhir_response(request, operation_outcome(issues), status, headers)
    return fhir_response(request, v.content, status, headers)


def not_modified(request: Request, v: StoredVersion, previous_updated: datetime | None = None) -> bool:
    """Conditional read (http://hl7.org/fhir/R4/http.html#cread) of `v`, from the request's headers:
    If-None-Match (weak comparison, a list or *) and If-Modified-Since (`previous_updated`: see unchanged)."""
    return unchanged(v, etag_versions(request.headers.get("if-none-match")),
                     _modified_since(request.headers.get("if-modified-since")), previous_updated)


def _modified_since(value: str | None) -> datetime | None:
    """The last instant an If-Modified-Since HTTP-date covers: it names a whole second, so a version
    written within that second is not modified since."""
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None  # an unparseable date is ignored (RFC 9110 13.1.3)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.replace(microsecond=999999)


