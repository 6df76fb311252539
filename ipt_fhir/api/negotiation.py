"""Content negotiation (http://hl7.org/fhir/R4/http.html#mime-type): JSON only, in and out.

The CapabilityStatement declares `json`; XML requests get 406 and XML bodies 415, each with an
OperationOutcome. `_format` overrides Accept; `_pretty=true` indents.
"""
from __future__ import annotations

import re
from functools import lru_cache

from fastapi import Request

from ipt_fhir.fhir.outcome import FHIRError

FHIR_JSON = "application/fhir+json"
JSON_FORMATS = {"json", "application/json", "application/fhir+json", "application/json+fhir", "text/json"}
XML_FORMATS = {"xml", "text/xml", "application/xml", "application/fhir+xml", "application/xml+fhir"}


_FHIR_VERSION = re.compile(r'fhirversion\s*=\s*"?([0-9a-z.\-]*)')


def media_types(header: str) -> list[str]:
    """The media types of an Accept or Content-Type header, lower-cased, in header order."""
    return [media for media, _ in weighted_values(header)]


_NEGOTIATED = "ipt_fhir.media_type"  # the request's answer format, kept in its scope once negotiated


def response_media_type(request: Request) -> str:
    """The media type to answer with, or 406 when the client accepts only formats we do not serve.
    Negotiated once per request: a write asks before it is applied and again for its response."""
    media = request.scope.get(_NEGOTIATED)
    if media is None:
        media = request.scope[_NEGOTIATED] = _negotiate(request)
    return media


def _negotiate(request: Request) -> str:
    if request.scope.get("query_string"):  # most requests have none: no need to parse it
        fmt = request.query_params.get("_format")
        if fmt is not None:
            fmt = fmt.strip().lower().replace(" ", "+")  # '+' arrives as a space when not percent-encoded
            media, _, params = fmt.partition(";")  # e.g. application/fhir+json;fhirVersion=4.0
            _check_fhir_version(params)
            if media.strip() in JSON_FORMATS:
                return "application/json" if media.strip() == "application/json" else FHIR_JSON
            raise FHIRError.of(406, "not-supported", f"_format '{fmt}' is not supported; this server speaks JSON")
    return _for_accept(request.headers.get("accept", ""))


@lru_cache(maxsize=256)  # a client sends the same Accept header with every request (a 406 is not cached)
def _for_accept(accept: str) -> str:
    _check_fhir_version(accept.lower())
    ranges = weighted_values(accept)
    if not ranges:
        return FHIR_JSON
    best, best_rank = None, None
    for media in (FHIR_JSON, "application/json"):  # what we can answer with, our preference first
        q, position = _quality(media, ranges)
        rank = (q, -position)  # the client's weights first, then the order it listed them in
        if q > 0 and (best_rank is None or rank > best_rank):
            best, best_rank = media, rank
    if best is not None:
        return best
    if any(q > 0 and media in XML_FORMATS for media, q in ranges):
        raise FHIRError.of(406, "not-supported", "XML is not supported; ask for application/fhir+json")
    if any(_covers(media, json) for media, _ in ranges for json in (FHIR_JSON, "application/json")):
        raise FHIRError.of(406, "not-supported", "The Accept header refuses JSON (q=0), the only format served")
    # Browsers and generic clients (text/html, text/plain...) still get JSON rather than an error.
    return FHIR_JSON


def _check_fhir_version(params: str) -> None:
    other = _other_fhir_version(params)
    if other is not None:
        raise FHIRError.of(406, "not-supported", f"fhirVersion {other} is not supported; this server is FHIR 4.0")


def _other_fhir_version(params: str) -> str | None:
    """The fhirVersion a media type's parameters name (http.html#version-parameter), if none of them is
    this server's 4.0; None when they name 4.0 or no version at all."""
    versions = _FHIR_VERSION.findall(params)
    return versions[0] if versions and not any(v in ("4.0", "4.0.1") for v in versions) else None


def weighted_values(header: str) -> list[tuple[str, float]]:
    """The values of a weighted list (RFC 9110 12.4.2: Accept's media ranges, Accept-Encoding's codings),
    lowercased, with their weights, in header order."""
    out = []
    for part in header.split(","):
        media, *params = [p.strip() for p in part.split(";")]
        if not media:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    q = 0.0  # a weight we cannot read accepts nothing rather than everything
        out.append((media.lower(), q))
    return out


def _covers(media_range: str, media: str) -> bool:
    if media_range == "*/*" or media_range == media:
        return True
    if media == FHIR_JSON and media_range == "application/json+fhir":  # the pre-R4 name of the same type
        return True
    return media_range.endswith("/*") and media.startswith(media_range[:-1])


def _quality(media: str, ranges: list[tuple[str, float]]) -> tuple[float, int]:
    """(weight, position) of the most specific range covering `media` (RFC 9110: a more specific range
    overrides a less specific one); (0, -1) when none covers it."""
    best = None
    for position, (media_range, q) in enumerate(ranges):
        if not _covers(media_range, media):
            continue
        specificity = 0 if media_range == "*/*" else 1 if media_range.endswith("/*") else 2
        if best is None or specificity > best[0]:
            best = (specificity, q, position)
    return (best[1], best[2]) if best is not None else (0.0, -1)


def wants_pretty(request: Request) -> bool:
    # Most requests carry no query string: parsing an empty one costs a create or read a few percent.
    return bool(request.scope.get("query_string")) and request.query_params.get("_pretty", "").lower() == "true"


def body_media_type(request: Request) -> str:
    """The body's media type (Content-Type), lower-cased, without parameters; '' when none is given."""
    return _content_type(request.headers.get("content-type", ""))[0]


@lru_cache(maxsize=256)  # a client sends the same Content-Type with every write
def _content_type(header: str) -> tuple[str, str | None, str | None]:
    """(media type lower-cased without parameters, or ''; a fhirVersion other than 4.0 it names; a charset
    other than UTF-8 it names)."""
    lowered = header.lower()
    charset = _CHARSET.search(lowered)
    other_charset = charset.group(1) if charset and charset.group(1) not in _UTF8_COMPATIBLE else None
    return next(iter(media_types(header)), ""), _other_fhir_version(lowered), other_charset


_CHARSET = re.compile(r';\s*charset\s*=\s*"?([^";,\s]*)')
_UTF8_COMPATIBLE = ("utf-8", "utf8", "us-ascii", "ascii")  # ASCII text is UTF-8 as it is


def check_body_media_type(request: Request, *, allow: tuple[str, ...] = ()) -> str:
    """Return the body's media type; 415 for anything that is not FHIR JSON (or one of `allow`)."""
    header = request.headers.get("content-type")
    if not header:
        return FHIR_JSON  # lenient: many scripts send JSON without a Content-Type
    media, other, charset = _content_type(header)
    if media in ("application/fhir+json", "application/json", "application/json+fhir") or media in allow:
        if other is not None:
            raise FHIRError.of(415, "not-supported", f"The body is FHIR {other}; this server takes FHIR 4.0")
        if charset is not None:  # FHIR's JSON is UTF-8 (http.html#mime-type); a body in another is not read as it
            raise FHIRError.of(415, "not-supported", f"The body's charset is {charset}; send UTF-8")
        return media
    accepted = " or ".join(("application/fhir+json", *allow))
    raise FHIRError.of(415, "not-supported", f"Content-Type '{media}' is not supported; send {accepted}")
