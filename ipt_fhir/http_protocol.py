"""uvicorn's HTTP protocol (httptools), answering requests it cannot parse with an OperationOutcome.

A request that httptools refuses never reaches the app: uvicorn answers it itself, with a plain-text
"Invalid HTTP request received." and status 400. On a FHIR server every non-2xx body is an
OperationOutcome (http.html), so `ipt-fhir serve` runs this subclass, which writes one instead, with the
headers the app gives its own errors (security.middleware) and a Date (RFC 9110 6.6.1). A method that
llhttp does not know at all (`FOO /fhir/Patient`) is a 501: RFC 9110 15.6.2 names it for a method "the
server does not recognize ... for any resource"; methods it knows but no route serves (TRACE, PROPFIND)
reach the app, which answers 405 with Allow. llhttp reports anything it cannot read as a method the
same way, so only a request that starts with a method token (RFC 9110 9.1) and a space is a 501; other
bytes (TLS sent to the plain-HTTP port, say) are a 400. The issues carry no `expression`: they concern
the HTTP message, not an element of a resource.
"""
from __future__ import annotations

import re
import sys

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ipt_fhir.fhir.jsonio import dump_json
from ipt_fhir.fhir.outcome import error, operation_outcome
from ipt_fhir.http_dates import current_http_date
from ipt_fhir.security.middleware import API_HEADER_BYTES

_REASONS = {400: b"Bad Request", 501: b"Not Implemented"}
_METHOD_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+ ")


def unparsable_request_response(exc: BaseException | None, received: bytes = b"",
                                extra_headers: list[tuple[bytes, bytes]] | tuple = ()) -> bytes:
    """The whole HTTP response to a request httptools refused with `exc` (None: for an unknown reason)
    on reading `received`; `extra_headers`: uvicorn's configured default headers."""
    if isinstance(exc, httptools.HttpParserInvalidMethodError) and _METHOD_TOKEN.match(received):
        status, code, diagnostics = 501, "not-supported", "The request's HTTP method is not one this server knows"
    else:
        detail = f": {exc}" if exc is not None and str(exc) else ""
        status, code, diagnostics = 400, "structure", f"The request is not a valid HTTP/1.1 message{detail}"
    body = dump_json(operation_outcome([error(code, diagnostics)]))
    headers = [(b"content-type", b"application/fhir+json; charset=utf-8"),
               (b"content-length", str(len(body)).encode()), *API_HEADER_BYTES,
               (b"date", current_http_date().encode("latin-1")), *extra_headers, (b"connection", b"close")]
    return b"".join([b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status]),
                     *(name + b": " + value + b"\r\n" for name, value in headers), b"\r\n", body])


class FhirHttpToolsProtocol(HttpToolsProtocol):
    _received = b""

    def data_received(self, data: bytes) -> None:
        self._received = data[:64]  # the start of a request line is enough; a kept-alive connection holds no body
        super().data_received(data)

    def send_400_response(self, msg: str) -> None:
        # uvicorn calls this from the `except httptools.HttpParserError` of data_received: the exception
        # being handled says why the request was refused.
        self.transport.write(unparsable_request_response(sys.exc_info()[1], self._received,
                                                         self.server_state.default_headers))
        self.transport.close()
