"""Every non-2xx answer is an OperationOutcome: FHIRErrors, HTTP errors of the framework (404 route,
405 method), request-validation errors and unexpected exceptions alike. No stack trace ever leaves."""
from __future__ import annotations

import asyncio
import logging
from typing import Callable, Iterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from ipt_fhir.fhir.jsonio import dump_json
from ipt_fhir.fhir.outcome import FHIRError, error, method_not_allowed, operation_outcome
from ipt_fhir.fhir.resource_types import REST_TYPES, require_rest_type
from ipt_fhir.http_dates import current_http_date
from ipt_fhir.security import guard
from ipt_fhir.security.middleware import ANSWER_AT_ONCE

from .body import body_root, rooted

log = logging.getLogger("ipt_fhir.errors")

try:
    from psycopg import DataError as _PsycopgDataError

    _DATA_ERRORS: tuple[type[Exception], ...] = (DataError, _PsycopgDataError)
except ImportError:  # SQLite-only install
    _DATA_ERRORS = (DataError,)

_HTTP_ISSUE_CODES = {404: "not-found", 405: "not-supported", 406: "not-supported", 413: "too-long",
                     415: "not-supported", 401: "login", 403: "forbidden"}


def outcome_response(status: int, issues, headers: dict[str, str] | None = None,
                     request: Request | None = None) -> Response:
    """An error's OperationOutcome. With the `request`, every error issue that points at no element (the
    instance that is not there: 404, 410; a version that does not hold: 412; a request refused whole)
    names what the request addresses, as whole-body errors do (body.body_root): `Patient` for
    `/fhir/Patient/x`, `Bundle` at the base, `Parameters` for an operation."""
    if request is not None and any(not i.expression and i.is_error for i in issues):
        issues = rooted(issues, body_root(request.url.path, request.headers.get("content-type")), errors_only=True)
    # Error bodies ignore Accept: an OperationOutcome in FHIR JSON is the one thing we can always say.
    return Response(dump_json(operation_outcome(issues)), status_code=status, headers=headers,
                    media_type="application/fhir+json; charset=utf-8")


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (RFC 9110 15.5.6: a 405 lists them in Allow).
    Starlette's own Allow names only the methods of the first route whose path matched, while several
    routes share a path here (read, update, patch and delete of an instance, for one)."""
    routes = list(_plain_routes(request.app.router.routes))
    allowed = []
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        for route in routes:
            match, child = route.matches(scope)
            if match == Match.FULL:  # the route that would answer: one that only refuses does not count
                if not getattr(child.get("endpoint"), "refuses_writes", False):
                    allowed.append(method)
                break
    resource_type = request.url.path.removeprefix("/fhir/").split("/", 1)[0]
    if not guard.writable(resource_type):  # the generic routes match its writes, and refuse them
        allowed = [m for m in allowed if m in ("GET", "HEAD")]
    return allowed


def _unknown_type(path: str) -> FHIRError | None:
    """The 404 for `[base]/[type]…` naming no REST type (`/fhir/patient/1`): every route that matches such
    a path takes any first segment and refuses it with this 404, so a method none of them serves must not
    get a 405 whose Allow names methods that all answer 404. The server's own first segments (metadata,
    `$`-operations, `_history`, `.well-known`) keep their 405s."""
    if not path.startswith("/fhir/"):
        return None
    segment = path.removeprefix("/fhir/").split("/", 1)[0]
    if not segment or segment[0] in "$_." or segment == "metadata" or segment in REST_TYPES:
        return None
    try:
        require_rest_type(segment)
    except FHIRError as exc:
        return exc
    return None


def _plain_routes(routes: list) -> Iterator:
    """The routes themselves, also inside routers included whole (newer FastAPI keeps an included
    router as one route whose match names no endpoint)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        context = getattr(route, "include_context", None)
        if included is not None and getattr(context, "prefix", None) == "":
            yield from _plain_routes(included.routes)
        else:
            yield route


def refuses_writes(endpoint: Callable) -> Callable:
    """Marks a route that exists only to answer writes with a 405 (outcome.read_only): its methods are
    no methods the path serves."""
    endpoint.refuses_writes = True  # type: ignore[attr-defined]
    return endpoint


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FHIRError)
    async def _fhir_error(request: Request, exc: FHIRError) -> Response:
        return outcome_response(exc.status, exc.issues, exc.headers or None, request)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            detail = f"No such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            unknown = _unknown_type(request.url.path)
            if unknown is not None:
                return outcome_response(404, unknown.issues, request=request)
            refused = method_not_allowed(request.method, request.url.path, allowed_methods(request))
            return outcome_response(405, refused.issues, refused.headers, request)
        else:
            detail = str(exc.detail)
        code = _HTTP_ISSUE_CODES.get(exc.status_code, "processing" if exc.status_code >= 500 else "invalid")
        return outcome_response(exc.status_code, [error(code, detail)], getattr(exc, "headers", None), request)

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(request: Request, exc: RequestValidationError) -> Response:
        issues = [
            error("invalid", f"{e.get('msg')}: {'.'.join(str(p) for p in e.get('loc', ()))}")
            for e in exc.errors()
        ]
        return outcome_response(400, issues, request=request)

    async def _data_error(request: Request, exc: Exception) -> Response:
        # The database refused a value the request carried (NUL in text, an out-of-range number or
        # timestamp); the unit of work rolled back. The client's input, so 400, never 500.
        log.warning("database refused a request value on %s %s: %s", request.method, request.url.path,
                    type(getattr(exc, "orig", None) or exc).__name__)
        return outcome_response(400, [error("value", "A value in the request cannot be stored or compared "
                                                     "(control character or out of range)")],
                                request=request)

    for data_error in _DATA_ERRORS:  # raw driver calls raise the driver's own DataError
        app.add_exception_handler(data_error, _data_error)

    # Added before every other middleware, so innermost of them: see UnexpectedErrorMiddleware.
    app.add_middleware(UnexpectedErrorMiddleware)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        # The last resort, for an exception of a middleware itself: Starlette answers it from its
        # outermost middleware, past the one that writes Date.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _internal_error(headers={"Date": current_http_date()})


def _internal_error(headers: dict[str, str] | None = None) -> Response:
    return outcome_response(500, [error("exception", "Internal server error; the request was not applied")],
                            headers=headers)


def _cut_off_by_shutdown() -> Response:
    # Work handed to a thread cannot be stopped: a write may still commit after this answer.
    return outcome_response(503, [error(
        "timeout", "The server shut down before this request finished (IPT_FHIR_SHUTDOWN_TIMEOUT elapsed); "
                   "its changes may or may not have been stored: read them before retrying")])


class UnexpectedErrorMiddleware:
    """An exception no handler took becomes the 500 OperationOutcome here, inside every other middleware,
    so that answer gets what every answer gets: the security headers, the request id, Date, the audit
    record. (Starlette's handler for Exception runs in its ServerErrorMiddleware, outside all of them.)
    A request cancelled before it answered, which uvicorn does once a shutdown's grace period is over,
    gets a 503 OperationOutcome here too (uvicorn's own answer would be a plain-text 500); the cancellation
    then goes on up, and uvicorn logs it as an error. Once the response has started there is nothing to
    answer with: the exception goes on up."""

    def __init__(self, app) -> None:  # noqa: ANN001
        self.app = app

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_noting_start(message) -> None:  # noqa: ANN001
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_noting_start)
        except Exception:
            if started:
                raise
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            await _internal_error()(scope, receive, send)
        except asyncio.CancelledError:
            if not started:
                log.warning("request cut off by the shutdown: %s %s", scope["method"], scope["path"])
                scope[ANSWER_AT_ONCE] = True  # uvicorn does not wait for this task: no await may suspend it
                await _cut_off_by_shutdown()(scope, receive, send)
            raise
