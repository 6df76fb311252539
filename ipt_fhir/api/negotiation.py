"""Content negotiation (http://hl7.org/fhir/R4/http.html#mime-type): JSON only, in and out.

The CapabilityStatement declares `json`; XML requests get 406 and XML bodies 415, each with an
OperationOutcome. `_format` overrides Accept; `_pretty=true` indents.
"""
from __future__ import annotations

import re

from fastapi import Request

from ipt_fhir.fhir.outcome import FHIRError

FHIR_JSON = "application/fhir+json"
JSON_FORMATS = {"json", "application/json", "application/fhir+json", "application/json+fhir", "text/json"}
XML_FORMATS = {"xml", "text/xml", "application/xml", "application/fhir+xml", "application/xml+fhir"}


_FHIR_VERSION = re.compile(r'fhirversion\s*=\s*"?([0-9a-z.\-]*)')


def media_types(header: str) -> list[str]:
    return [part.split(";")[0].strip().lower() for part in header.split(",") if part.strip()]


_NEGOTIATED = "ipt_fhir.media_type"  # the request's answer format, kept in its scope once negotiated


def response_media_type(request: Request) -> str:
    """The media type to answer with, or 406 when the client accepts only formats we do not serve.
    Negotiated once per request: a write asks before it is applied and again for its response."""
    media = request.scope.get(_NEGOTIATED)
    if media is None:
        media = request.scope[_NEGOTIATED] = _negotiate(request)
    return media


def _negotiate(request: Request) -> str:
    fmt = request.query_params.get("_format")
    if fmt is not None:
        fmt = fmt.strip().lower().replace(" ", "+")  # '+' arrives as a space when not percent-encoded
        if fmt in JSON_FORMATS:
            return "application/json" if fmt == "application/json" else FHIR_JSON
        raise FHIRError.of(406, "not-supported", f"_format '{fmt}' is not supported; this server speaks JSON")
    accept = request.headers.get("accept", "")
    versions = _FHIR_VERSION.findall(accept.lower())
    if versions and not any(v in ("4.0", "4.0.1") for v in versions):  # http.html#version-parameter
        raise FHIRError.of(406, "not-supported", f"fhirVersion {versions[0]} is not supported; this server is FHIR 4.0")
    accepted = media_types(accept)
    if not accepted:
        return FHIR_JSON
    for media in accepted:
        if media in ("application/fhir+json", "application/json+fhir", "*/*", "application/*"):
            return FHIR_JSON
        if media == "application/json":
            return "application/json"
    if any(m in XML_FORMATS for m in accepted):
        raise FHIRError.of(406, "not-supported", "XML is not supported; ask for application/fhir+json")
    # Browsers and generic clients (text/html, text/plain...) still get JSON rather than an error.
    return FHIR_JSON


def wants_pretty(request: Request) -> bool:
    return request.query_params.get("_pretty", "").lower() == "true"


def check_body_media_type(request: Request, *, allow: tuple[str, ...] = ()) -> str:
    """Return the body's media type; 415 for anything that is not FHIR JSON (or one of `allow`)."""
    header = request.headers.get("content-type")
    if not header:
        return FHIR_JSON  # lenient: many scripts send JSON without a Content-Type
    media = next(iter(media_types(header)), "")
    if media in ("application/fhir+json", "application/json", "application/json+fhir") or media in allow:
        return media
    raise FHIRError.of(415, "not-supported", f"Content-Type '{media}' is not supported; send application/fhir+json")
