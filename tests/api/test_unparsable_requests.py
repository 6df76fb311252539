"""Requests the HTTP parser refuses never reach the app; the server still answers them with an
OperationOutcome (http_protocol.py), as `ipt-fhir serve` runs it (SERVER_OPTIONS, used by running())."""
from __future__ import annotations

import json
import socket
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import pytest

from tests.live_server import running


def _exchange(base: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes; the status, headers (lower-cased names) and body of the answer, read to its end."""
    url = urlsplit(base)
    with socket.create_connection((url.hostname, url.port), timeout=10) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


@pytest.fixture
def served(app):  # noqa: ANN001, ANN201
    with running(app) as base:
        yield base


def _outcome(headers: dict[str, str], body: bytes) -> dict:
    assert headers["content-type"] == "application/fhir+json; charset=utf-8"
    assert int(headers["content-length"]) == len(body)
    assert headers["x-content-type-options"] == "nosniff" and headers["connection"] == "close"
    parsedate_to_datetime(headers["date"])  # RFC 9110 6.6.1: an origin server with a clock sends one
    outcome = json.loads(body)
    assert outcome["resourceType"] == "OperationOutcome"
    return outcome


def test_a_method_the_parser_does_not_know_is_501_with_an_outcome(served):
    status, headers, body = _exchange(served, b"BREW /fhir/Patient HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 501  # RFC 9110 15.6.2: a method not recognised for any resource
    [issue] = _outcome(headers, body)["issue"]
    assert issue["severity"] == "error" and issue["code"] == "not-supported"
    assert "method" in issue["diagnostics"]


def test_a_method_the_parser_knows_but_no_route_serves_still_reaches_the_app(served):
    status, headers, body = _exchange(served, b"PROPFIND /fhir/Patient HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 405 and "GET" in headers["allow"]
    assert _outcome(headers, body)["issue"][0]["code"] == "not-supported"


@pytest.mark.parametrize("request_bytes", [
    b"GET /fhir/Patient HTTP/1.1\r\nHost: x\r\nNo colon in this header\r\n\r\n",
    b"GET /fhir/Patient HTTP/9.9\r\nHost: x\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello sent to the plain-HTTP port
])
def test_a_malformed_message_is_400_with_an_outcome(served, request_bytes):
    status, headers, body = _exchange(served, request_bytes)
    assert status == 400
    [issue] = _outcome(headers, body)["issue"]
    assert issue["code"] == "structure" and "not a valid HTTP/1.1 message" in issue["diagnostics"]


def test_the_connection_is_closed_and_the_server_goes_on(served):
    _exchange(served, b"BREW / HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _, body = _exchange(served, b"GET /fhir/metadata HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 200 and json.loads(body)["resourceType"] == "CapabilityStatement"
