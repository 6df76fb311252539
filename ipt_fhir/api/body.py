"""Reading request bodies: media type checked (415), size bounded (413), JSON parsed strictly (400)."""
from __future__ import annotations

from typing import Any

from fastapi import Request

from ipt_fhir.fhir.jsonio import parse_json
from ipt_fhir.fhir.outcome import FHIRError

from .negotiation import check_body_media_type, response_media_type


async def read_json_body(request: Request, *, allow: tuple[str, ...] = ()) -> tuple[Any, str]:
    # Negotiate the answer's format first: a write must not be applied and then refused with a 406.
    response_media_type(request)
    media = check_body_media_type(request, allow=allow)
    body = await read_body(request)
    if not body.strip():
        raise FHIRError.of(400, "required", "The request has no body")
    return parse_json(body), media


async def read_body(request: Request) -> bytes:
    """The request body, 413 past the configured limit (a body sent without Content-Length is also
    counted as it arrives, api/body_limit.py)."""
    body = await request.body()
    limit = request.app.state.settings.max_body_bytes
    if len(body) > limit:
        raise FHIRError.of(413, "too-long", f"The request body is larger than {limit} bytes")
    return body
