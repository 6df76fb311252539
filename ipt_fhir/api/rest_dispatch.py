"""A front door for the hot REST interactions, in front of FastAPI's routing.

FastAPI 0.165 finds a route by trying included routers and their routes in order (about 20k
instructions per candidate; a create passed 22 of them) and then solves the route's dependencies with
its generic machinery: together about half of what the web layer costs a create. The interactions
here have fixed shapes, so one split of the path finds their handler, which is then called with the
arguments FastAPI would have solved for it: `authorize` first (the routers' `secured` dependency), then
the route's own dependencies (lookups in app.state, deps.py).

The front door takes a request only when FastAPI is certain to pick the same handler:

- a known resource type and segments that are no `$operation` or `_reserved` name (the routes' own
  `fhirsegment` convertor), so `/fhir/$import`, `/fhir/Patient/$everything`, `/fhir/_history`,
  `/fhir/Patient/x/_history` and `/fhir/Patient/_search` keep reaching their routes;
- no write to one of the server's own conformance resources, which ipt_routes refuses ahead of rest_routes;
- a method the shape has a handler for: anything else (405s, `$validate`, unknown routes) is FastAPI's.

It steps aside, leaving everything to FastAPI, while `app.dependency_overrides` is set (so overrides are
always honoured) and while FastAPI's native OpenTelemetry records the request (so spans keep their
route names and operation children). The OpenAPI document is built from FastAPI's routes and does not
see this one. Errors raised by a handler propagate to the app's exception handlers exactly as from a
FastAPI route, and `scope["route"]` is the FastAPI route the handler belongs to, so the access log and
metrics name the same route templates.
"""
from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette._utils import get_route_path
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

from ipt_fhir.fhir.resource_types import REST_TYPES
from ipt_fhir.services.ipt import conformance as conf

from . import rest_routes, search_routes
from .deps import get_database, get_history_service, get_resource_service, get_settings

# The shapes, after "/fhir/": [type] | [type]/[id] | [type]/[id]/_history/[version]
_TYPE, _INSTANCE, _VERSION = 1, 2, 4

# (method, shape) -> the handler FastAPI's routing resolves it to (the first route that fully matches).
_HANDLERS: dict[tuple[str, int], Callable[..., Any]] = {
    ("GET", _INSTANCE): rest_routes.read, ("HEAD", _INSTANCE): rest_routes.read,
    ("GET", _VERSION): rest_routes.vread, ("HEAD", _VERSION): rest_routes.vread,
    ("POST", _TYPE): rest_routes.create,
    ("PUT", _INSTANCE): rest_routes.update, ("PUT", _TYPE): rest_routes.conditional_update,
    ("PATCH", _INSTANCE): rest_routes.patch, ("PATCH", _TYPE): rest_routes.conditional_patch,
    ("DELETE", _INSTANCE): rest_routes.delete, ("DELETE", _TYPE): rest_routes.conditional_delete,
    ("GET", _TYPE): search_routes.type_search, ("HEAD", _TYPE): search_routes.type_search,
}

# Route dependencies the handlers may declare: each only looks something up in app.state.
_SIMPLE_DEPENDENCIES = {get_settings, get_database, get_resource_service, get_history_service}

# ipt_routes answers writes to [conformance type]/[one of the server's ids] ahead of rest_routes (a 405
# whose Allow names GET and HEAD); reads and searches of them are rest_routes' and search_routes'.
_CONFORMANCE_TYPE = re.compile(f"(?:{conf.TYPE_PATTERN})")
_CONFORMANCE_ID = re.compile(f"(?:{conf.RESERVED_ID_PATTERN})")


@dataclass(frozen=True)
class _Handler:
    endpoint: Callable[..., Any]
    route: APIRoute  # the FastAPI route of the endpoint: scope["route"], as after FastAPI's routing
    dependencies: tuple[tuple[str, Callable[[Request], Awaitable[Any]]], ...]  # (parameter, provider)
    is_async: bool


def _segment(value: str) -> bool:
    """What the routes' `fhirsegment` convertor accepts (no '/': the path is already split)."""
    return value != "" and value[0] not in "$_"


class RestFrontDoor(BaseRoute):
    def __init__(self, app: FastAPI, authorize: Callable[[Request], Awaitable[None]]) -> None:
        self._app = app
        self._authorize = authorize
        # The routers' own APIRoute objects: what FastAPI puts in scope["route"] for their requests.
        routes = [r for r in (*rest_routes.router.routes, *search_routes.router.routes) if isinstance(r, APIRoute)]
        self._handlers = {key: _handler(endpoint, key[0], routes) for key, endpoint in _HANDLERS.items()}

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or self._app.dependency_overrides or scope.get("fastapi.telemetry") is not None:
            return Match.NONE, {}
        path = get_route_path(scope)
        if not path.startswith("/fhir/"):
            return Match.NONE, {}
        parts = path[6:].split("/")
        shape = len(parts)
        resource_type = parts[0]
        if resource_type not in REST_TYPES:
            return Match.NONE, {}
        if shape == _TYPE:
            params = {"resource_type": resource_type}
        elif shape == _INSTANCE or (shape == _VERSION and parts[2] == "_history" and parts[3] != ""):
            resource_id = parts[1]
            if not _segment(resource_id):
                return Match.NONE, {}
            if scope["method"] in ("PUT", "PATCH", "DELETE") and _CONFORMANCE_TYPE.fullmatch(resource_type) \
                    and _CONFORMANCE_ID.fullmatch(resource_id):
                return Match.NONE, {}
            params = {"resource_type": resource_type, "resource_id": resource_id}
            if shape == _VERSION:
                params["version_id"] = parts[3]
        else:
            return Match.NONE, {}
        handler = self._handlers.get((scope["method"], shape))
        if handler is None:
            return Match.NONE, {}
        return Match.FULL, {"endpoint": handler.endpoint, "path_params": params, "route": handler.route,
                            "ipt_fhir.rest_handler": handler}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler: _Handler = scope["ipt_fhir.rest_handler"]
        request = Request(scope, receive, send)
        await self._authorize(request)
        kwargs = dict(scope["path_params"])
        kwargs["request"] = request
        for name, provider in handler.dependencies:
            kwargs[name] = await provider(request)
        if handler.is_async:
            response = await handler.endpoint(**kwargs)
        else:  # as FastAPI runs a plain `def` endpoint
            response = await run_in_threadpool(handler.endpoint, **kwargs)
        await response(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NoMatchFound(name, path_params)  # URLs are built from the FastAPI routes


def _handler(endpoint: Callable[..., Any], method: str, routes: list[APIRoute]) -> _Handler:
    route = next((r for r in routes if r.endpoint is endpoint and method in r.methods), None)
    if route is None:
        raise RuntimeError(f"{endpoint.__name__}: no FastAPI route for {method}")
    # Called with path parameters, the request and the dependencies only: refuse at startup a handler
    # that has grown other parameters (query, header, body), which FastAPI would have parsed for it.
    dependant = route.dependant
    if dependant.query_params or dependant.header_params or dependant.cookie_params or dependant.body_params:
        raise RuntimeError(f"{endpoint.__name__}: parameters the front door does not parse")
    dependencies = []
    for dependency in dependant.dependencies:
        if dependency.call not in _SIMPLE_DEPENDENCIES or dependency.name is None:
            raise RuntimeError(f"{endpoint.__name__}: dependency {dependency.call} is not a plain app.state lookup")
        dependencies.append((dependency.name, dependency.call))
    return _Handler(endpoint, route, tuple(dependencies), inspect.iscoroutinefunction(endpoint))
