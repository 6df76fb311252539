"""Reading request bodies: media type checked (415), size bounded (413), JSON parsed strictly (400)."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from fastapi import Request

from ipt_fhir.fhir.jsonio import parse_json
from ipt_fhir.fhir.outcome import FHIRError, Issue
from ipt_fhir.fhir.validation.definitions import known_resource_types

from .negotiation import check_body_media_type, response_media_type


async def read_json_body(request: Request, *, allow: tuple[str, ...] = ()) -> tuple[Any, str]:
    """The parsed JSON body and its media type. A body refused as a whole (415, 413, empty, not JSON) has
    no element to point at: its issues name the whole resource it should have been (body_root)."""
    # Negotiate the answer's format first: a write must not be applied and then refused with a 406.
    response_media_type(request)
    try:
        media = check_body_media_type(request, allow=allow)
        body = await read_body(request)
        if not body.strip():
            raise FHIRError.of(400, "required", "The request has no body")
        return parse_json(body), media
    except FHIRError as exc:
        raise at_root(exc, body_root(request.scope["path"])) from None


async def read_body(request: Request) -> bytes:
    """The request body, 413 past the configured limit (a body sent without Content-Length is also
    counted as it arrives, api/body_limit.py)."""
    body = await request.body()
    limit = request.app.state.settings.max_body_bytes
    if len(body) > limit:
        raise FHIRError.of(413, "too-long", f"The request body is larger than {limit} bytes")
    return body


NDJSON = "application/fhir+ndjson"
NDJSON_TYPES = frozenset({NDJSON, "application/ndjson", "application/x-ndjson"})


def body_root(path: str, media_type: str | None = None) -> str:
    """The FHIRPath of what a request body sent to `path` should be, from the URL alone (middleware refuses
    bodies before any route is chosen): `Bundle` at the base, `Parameters` for an operation (`$validate`
    takes the resource itself), else the resource type the URL names (`Patient`), or `Resource`. An NDJSON
    body (`$import`) is resources, one per line: `Resource`."""
    if media_type is not None and media_type.split(";")[0].strip().lower() in NDJSON_TYPES:
        return "Resource"
    segments = path.split("/")
    segments = segments[segments.index("fhir") + 1:] if "fhir" in segments else segments
    segments = [s for s in segments if s]
    if not segments:
        return "Bundle"
    first, last = segments[0], segments[-1]
    if last.startswith("$") and last != "$validate":
        return "Parameters"
    return first if first in known_resource_types() else "Resource"


def scope_media_type(scope: dict) -> str | None:
    """The Content-Type of a request, from its ASGI scope (for middleware, before any Request exists)."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            return value.decode("latin-1")
    return None


def at_root(exc: FHIRError, root: str) -> FHIRError:
    """`exc` with `root` as the expression of each issue that names none."""
    exc.issues = rooted(exc.issues, root)
    return exc


def rooted(issues: list[Issue], root: str, *, errors_only: bool = False) -> list[Issue]:
    """`issues`, each (or each error) that names no element pointing at `root` instead."""
    return [replace(i, expression=(root,)) if not i.expression and (i.is_error or not errors_only) else i
            for i in issues]
