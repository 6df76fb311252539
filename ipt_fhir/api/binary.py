"""Binary in its native form (http://hl7.org/fhir/R4/binary.html#rest).

"When a read request is made for the binary resource that doesn't explicitly specify the FHIR content
types application/fhir+xml or application/fhir+json, then the content should be returned using the
content type stated in the resource", and content posted or put "using a content type other than FHIR"
becomes a Binary with that contentType. So a browser or `curl -O` gets the PDF itself, a FHIR client
(which names a FHIR format in Accept or `_format`) the Binary resource. Binary.securityContext travels
as the X-Security-Context header both ways.
"""
from __future__ import annotations

import base64
import binascii

from fastapi import Request
from fastapi.responses import Response

from ipt_fhir.fhir.jsonio import load_stored
from ipt_fhir.fhir.outcome import FHIRError
from ipt_fhir.store.resources import StoredVersion

from .body import at_root, read_body
from .negotiation import JSON_FORMATS, XML_FORMATS, body_media_type, media_types

SECURITY_CONTEXT = "X-Security-Context"
# The Content-Types a write body is read as a FHIR resource in (XML is refused later, with 415).
_FHIR_BODY_TYPES = {"application/fhir+json", "application/json", "application/json+fhir",
                    "application/fhir+xml", "application/xml+fhir", "application/xml", "text/xml"}


def wants_native(request: Request) -> bool:
    """A read of a Binary that names no FHIR (or JSON/XML) format in `_format` or Accept."""
    if "_format" in request.query_params:
        return False
    return not set(media_types(request.headers.get("accept", ""))) & (JSON_FORMATS | XML_FORMATS)


def native_response(request: Request, stored: StoredVersion, headers: dict[str, str]) -> Response | None:
    """The Binary's own bytes with its own Content-Type, plus the version headers of a read; None when
    its data cannot be decoded (then the resource itself is the answer)."""
    doc = load_stored(stored.content)
    try:
        data = base64.b64decode(doc.get("data") or "")  # base64Binary may hold whitespace: skipped
    except (binascii.Error, ValueError):
        return None
    headers = dict(headers)
    reference = (doc.get("securityContext") or {}).get("reference")
    if reference:
        headers[SECURITY_CONTEXT] = reference
    if request.method == "HEAD":
        headers["Content-Length"] = str(len(data))
        data = b""
    return Response(content=data, status_code=200, headers=headers,
                    media_type=doc.get("contentType") or "application/octet-stream")


def is_native_body(request: Request) -> bool:
    """A write to Binary whose Content-Type is not a FHIR format: the body is the content itself."""
    media = body_media_type(request)
    return bool(media) and media not in _FHIR_BODY_TYPES


async def binary_from_body(request: Request, resource_id: str | None = None) -> dict:
    """The Binary resource a native write stands for: its Content-Type, its bytes (base64) and the
    X-Security-Context reference, if sent."""
    try:
        body = await read_body(request)
    except FHIRError as exc:
        raise at_root(exc, "Binary") from None
    binary: dict = {"resourceType": "Binary"}
    if resource_id is not None:
        binary["id"] = resource_id
    binary["contentType"] = request.headers["content-type"].strip()
    context = request.headers.get(SECURITY_CONTEXT)
    if context:
        binary["securityContext"] = {"reference": context.strip()}
    if body:
        binary["data"] = base64.b64encode(body).decode("ascii")
    return binary
