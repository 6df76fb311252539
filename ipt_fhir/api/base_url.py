"""The FHIR base URL a client called (…/fhir), as links, Location headers and audit records name it."""
from __future__ import annotations

from starlette.types import Scope

_BASE_URL = "ipt_fhir.base_url"  # the request's base, kept in its scope once computed
_BASE_HEADERS = (b"x-forwarded-host", b"host", b"x-forwarded-prefix")


def fhir_base_of(scope: Scope) -> str:
    """The base the client called, honouring a reverse proxy's X-Forwarded-* headers. Computed once
    per request: a write needs it for the service call, again for its Location, and for its audit.
    The scheme is the scope's: proxy_headers.py sets it from a trusted proxy's X-Forwarded-Proto (and
    removes everyone else's X-Forwarded-* headers), one reading of that header for the whole app."""
    base = scope.get(_BASE_URL)
    if base is None:
        base = scope[_BASE_URL] = _compute(scope)
    return base


def _compute(scope: Scope) -> str:
    found: dict[bytes, str] = {}
    for name, value in scope["headers"]:  # one pass; the first of repeated headers counts
        if name in _BASE_HEADERS and name not in found:
            found[name] = value.decode("latin-1")
    proto = scope.get("scheme", "http")
    host = found.get(b"x-forwarded-host") or found.get(b"host")
    if host is None:
        server = scope.get("server") or ("localhost", 80)
        host = f"{server[0]}:{server[1]}"
    host = host.split(",")[0].strip()
    prefix = found.get(b"x-forwarded-prefix", "").rstrip("/")
    return f"{proto}://{host}{prefix}/fhir"
