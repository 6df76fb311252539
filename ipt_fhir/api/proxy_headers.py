"""X-Forwarded-* headers, believed only from the reverse proxies the deployment names.

The base URL in Location headers, paging links, Bundle fullUrls, bulk manifests and audit records comes
from X-Forwarded-Proto/-Host/-Prefix (api/base_url.py), and the client address in audit records from
X-Forwarded-For. Any client can send those headers; believed from anyone, they would let a caller put a
host of its choosing into links that a shared cache may serve to others, and a made-up address into the
audit trail. So they count only when the TCP peer is a trusted proxy (IPT_FHIR_FORWARDED_ALLOW_IPS,
default 127.0.0.1, as uvicorn's own default); from any other peer they are removed before anything reads
them. For a trusted peer the client address and scheme are rewritten here, as uvicorn's ProxyHeadersMiddleware
would (`ipt-fhir serve` turns that one off: it would rewrite the peer address this middleware checks).
"""
from __future__ import annotations

import ipaddress

from starlette.types import ASGIApp, Receive, Scope, Send

_FORWARDED_PREFIX = b"x-forwarded-"


class TrustedProxies:
    """A comma-separated list of IP addresses, networks (CIDR) and literal peer names (a unix socket's
    name, a test client's); `*` trusts every peer."""

    def __init__(self, spec: str) -> None:
        entries = [e.strip() for e in spec.split(",") if e.strip()]
        self.everyone = "*" in entries
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.literals: set[str] = set()
        for entry in entries:
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.literals.add(entry)

    def __contains__(self, host: str | None) -> bool:
        if self.everyone:
            return True
        if host is None:
            return False
        if host in self.literals:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.networks)


class ProxyHeadersMiddleware:
    def __init__(self, app: ASGIApp, trusted: str) -> None:
        self.app = app
        self.trusted = TrustedProxies(trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":  # the app serves no websockets
            headers = scope["headers"]
            if any(name.startswith(_FORWARDED_PREFIX) for name, _ in headers):  # most requests: none
                client = scope.get("client")
                scope = dict(scope)
                if (client[0] if client else None) in self.trusted:
                    self._apply(scope, headers)
                else:
                    scope["headers"] = [(n, v) for n, v in headers if not n.startswith(_FORWARDED_PREFIX)]
        await self.app(scope, receive, send)

    def _apply(self, scope: dict, headers: list[tuple[bytes, bytes]]) -> None:
        """A trusted proxy's view: the scheme it was called with and the client it served."""
        proto = forwarded_for = None
        for name, value in headers:  # the first of a repeated header, as base_url reads them
            if name == b"x-forwarded-proto" and proto is None:
                proto = value.decode("latin-1").split(",")[0].strip().lower()
            elif name == b"x-forwarded-for" and forwarded_for is None:
                forwarded_for = value.decode("latin-1")
        if proto in ("http", "https"):
            scope["scheme"] = proto
        client = self._client_of(forwarded_for) if forwarded_for else None
        if client:
            scope["client"] = (client, 0)

    def _client_of(self, forwarded_for: str) -> str | None:
        """The nearest address that is not one of the trusted proxies: each proxy appends the peer it
        saw, so the addresses right of the first untrusted one were written by trusted proxies, and the
        ones left of it by whoever called, which may be anything."""
        hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
        for hop in reversed(hops):
            if hop not in self.trusted:
                return hop
        return hops[0] if hops else None
