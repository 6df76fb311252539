"""`[base]/Patient/` is `[base]/Patient`: a FHIR URL with a trailing slash is served as the one without.

Starlette would answer such a request with a 307 redirect instead. Behind a reverse proxy that redirect
points at the wrong place: its Location is built from the Host header the proxy sent, not from the
X-Forwarded-* headers every other link of this server honours (base_url.py). And a client that does not
follow redirects, or will not send a POST or PUT body twice, gets an empty 307 rather than an answer.
So this route, the last one, takes a path under /fhir/ that ends in a slash, that no other route took
and that some route takes without it; it removes the trailing slashes and routes the request again:
it is then answered exactly as without them, links and Location included. `[base]/` itself is a route
of its own (system search).
"""
from __future__ import annotations

from typing import Any

from starlette._utils import get_route_path
from starlette.routing import BaseRoute, Match, NoMatchFound, Router
from starlette.types import Receive, Scope, Send

_PREFIX = "/fhir/"


class TrailingSlashRoute(BaseRoute):
    def __init__(self, router: Router) -> None:
        self.router = router

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        path = get_route_path(scope)
        if not (path.startswith(_PREFIX) and path.endswith("/") and len(path.rstrip("/")) >= len(_PREFIX)):
            return Match.NONE, {}
        # Only when some route takes the path without the slash. Otherwise Starlette's own slash
        # redirect, which probes the routes with a slash added to an unmatched path, would find this
        # one and send a 404's path to its slashed twin and back.
        probe = {**scope, "path": scope["path"].rstrip("/")}
        for route in self.router.routes:
            if route is not self and route.matches(probe)[0] is not Match.NONE:
                return Match.FULL, {}
        return Match.NONE, {}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        # In place: the middlewares around the router read the route it picks from this same scope
        # (access log, metrics, audit).
        scope["path"] = scope["path"].rstrip("/")
        if isinstance(scope.get("raw_path"), bytes):
            scope["raw_path"] = scope["raw_path"].rstrip(b"/")
        scope.pop("route", None)
        await self.router(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NoMatchFound(name, path_params)  # URLs are built from the FastAPI routes
