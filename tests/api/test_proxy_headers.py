"""X-Forwarded-* headers count only from the reverse proxies IPT_FHIR_FORWARDED_ALLOW_IPS names."""
from __future__ import annotations

import asyncio

import pytest
from fastapi.testclient import TestClient

from ipt_fhir.api.proxy_headers import ProxyHeadersMiddleware, TrustedProxies
from ipt_fhir.app import create_app
from ipt_fhir.settings import Settings

FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "fhir.clinic.example", "X-Forwarded-Prefix": "/ehr"}


def _client(database, database_url: str, peer: str, trusted: str | None = None) -> TestClient:
    extra = {} if trusted is None else {"forwarded_allow_ips": trusted}
    return TestClient(create_app(Settings(database_url=database_url, **extra), database), client=(peer, 4711))


def _created_location(client: TestClient, headers: dict[str, str]) -> str:
    r = client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=headers)
    assert r.status_code == 201, r.text
    return r.headers["location"]


def test_a_clients_forwarded_host_does_not_reach_the_location_header(database, database_url):
    with _client(database, database_url, peer="203.0.113.9") as client:
        location = _created_location(client, FORWARDED)
    assert location.startswith("http://testserver/fhir/Patient/")


def test_the_default_trusts_a_proxy_on_the_same_machine(database, database_url):
    with _client(database, database_url, peer="127.0.0.1") as client:
        location = _created_location(client, FORWARDED)
    assert location.startswith("https://fhir.clinic.example/ehr/fhir/Patient/")


def test_a_proxy_in_a_trusted_network_is_believed(database, database_url):
    with _client(database, database_url, peer="10.1.2.3", trusted="127.0.0.1, 10.0.0.0/8") as client:
        location = _created_location(client, FORWARDED)
        links = client.get("/fhir/Patient?_count=1", headers=FORWARDED).json()["link"]
    assert location.startswith("https://fhir.clinic.example/ehr/fhir/Patient/")
    assert all(link["url"].startswith("https://fhir.clinic.example/ehr/fhir/Patient?") for link in links)


def test_searchset_links_ignore_an_untrusted_peers_forwarded_headers(database, database_url):
    with _client(database, database_url, peer="198.51.100.7", trusted="10.0.0.0/8") as client:
        client.post("/fhir/Patient", json={"resourceType": "Patient"})
        links = client.get("/fhir/Patient?_count=1", headers=FORWARDED).json()["link"]
    assert links and all(link["url"].startswith("http://testserver/fhir/Patient?") for link in links)


def _seen_scope(peer: tuple[str, int], headers: dict[str, str], trusted: str, scheme: str = "http") -> dict:
    seen = {}

    async def app(scope, receive, send):  # noqa: ANN001, ANN202
        seen.update(scope)

    middleware = ProxyHeadersMiddleware(app, trusted=trusted)
    asyncio.run(middleware({"type": "http", "scheme": scheme, "client": peer,
                      "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}, None, None))
    return seen


def test_a_trusted_proxy_sets_the_client_address_and_scheme():
    scope = _seen_scope(("10.0.0.2", 5000), {"X-Forwarded-For": "192.0.2.44, 10.0.0.9",
                                                  "X-Forwarded-Proto": "https"}, trusted="10.0.0.0/8")
    # 10.0.0.9 is another trusted proxy in the chain; the nearest untrusted hop is the client
    assert scope["client"] == ("192.0.2.44", 0)
    assert scope["scheme"] == "https"


def test_an_untrusted_peer_keeps_its_own_address_and_loses_the_headers():
    scope = _seen_scope(("192.0.2.1", 5000), {"X-Forwarded-For": "10.9.9.9", "X-Forwarded-Proto": "https",
                                                   "Host": "fhir.local"}, trusted="127.0.0.1")
    assert scope["client"] == ("192.0.2.1", 5000)
    assert scope["scheme"] == "http"
    assert scope["headers"] == [(b"host", b"fhir.local")]


def test_addresses_a_client_wrote_left_of_the_nearest_untrusted_hop_are_not_believed():
    scope = _seen_scope(("127.0.0.1", 5000), {"X-Forwarded-For": "10.0.0.1, 198.51.100.20"},
                              trusted="127.0.0.1, 10.0.0.0/8")
    assert scope["client"] == ("198.51.100.20", 0)


@pytest.mark.parametrize(("spec", "host", "trusted"), [
    ("127.0.0.1", "127.0.0.1", True),
    ("127.0.0.1", "127.0.0.2", False),
    ("10.0.0.0/8, ::1", "10.200.3.4", True),
    ("10.0.0.0/8, ::1", "::1", True),
    ("fd00::/8", "fd12::5", True),
    ("*", "203.0.113.1", True),
    ("unix:/run/ipt.sock", "unix:/run/ipt.sock", True),
    ("127.0.0.1", None, False),
    ("127.0.0.1", "not-an-address", False),
])
def test_trusted_proxies(spec, host, trusted):
    assert (host in TrustedProxies(spec)) is trusted
