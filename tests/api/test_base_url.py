"""fhir_base_url: the base the client called, behind reverse proxies too; computed once per request."""
from __future__ import annotations

import asyncio

import pytest
from starlette.requests import Request

from ipt_fhir.api.proxy_headers import ProxyHeadersMiddleware
from ipt_fhir.api.responses import fhir_base_url


def _request(headers: list[tuple[str, str]], scheme: str = "http", server=("10.0.0.5", 8080)) -> Request:  # noqa: ANN001
    """The request as the app sees it from a trusted proxy: after ProxyHeadersMiddleware, which sets the
    scheme from X-Forwarded-Proto."""
    scope = {"type": "http", "method": "GET", "path": "/fhir/Patient/1", "root_path": "", "query_string": b"",
             "scheme": scheme, "server": server, "client": ("127.0.0.1", 5000),
             "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]}
    seen: dict = {}

    async def app(inner, _receive, _send) -> None:  # noqa: ANN001
        seen.update(inner)

    asyncio.run(ProxyHeadersMiddleware(app, trusted="127.0.0.1")(scope, None, None))
    return Request(seen)


@pytest.mark.parametrize(("headers", "scheme", "expected"), [
    ([("Host", "fhir.local:8080")], "http", "http://fhir.local:8080/fhir"),
    ([("Host", "fhir.local")], "https", "https://fhir.local/fhir"),
    ([], "http", "http://10.0.0.5:8080/fhir"),  # no Host: the server address
    ([("Host", "inner"), ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "fhir.example.org")], "http",
     "https://fhir.example.org/fhir"),
    ([("Host", "inner"), ("X-Forwarded-Proto", "https, http"), ("X-Forwarded-Host", "a.example, b.example")],
     "http", "https://a.example/fhir"),  # proxy chains: the first (client-facing) value
    ([("Host", "inner"), ("X-Forwarded-Prefix", "/api/")], "http", "http://inner/api/fhir"),
    ([("Host", "first"), ("Host", "second"), ("X-Forwarded-Proto", "https"), ("X-Forwarded-Proto", "ftp")], "http",
     "https://first/fhir"),  # a repeated header: its first value, as Request.headers.get gives
    ([("Host", "inner"), ("X-Forwarded-Proto", "HTTPS")], "http", "https://inner/fhir"),  # the scheme, as the scope has it
    ([("Host", "inner"), ("X-Forwarded-Proto", "ftp")], "http", "http://inner/fhir"),  # no scheme for links: ignored
])
def test_base_url(headers, scheme, expected):
    assert fhir_base_url(_request(headers, scheme)) == expected


def test_computed_once_per_request():
    request = _request([("Host", "fhir.local")])
    assert fhir_base_url(request) == "http://fhir.local/fhir"
    request.scope["headers"] = [(b"host", b"changed")]
    assert fhir_base_url(Request(request.scope)) == "http://fhir.local/fhir"  # another view of the same request
