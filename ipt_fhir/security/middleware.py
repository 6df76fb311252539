"""HTTP-wide security concerns as middleware: security headers, CORS, the audit collector per request,
and the startup rule on running without authorization."""
from __future__ import annotations

import logging

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ipt_fhir.api.base_url import fhir_base_of
from ipt_fhir.api.middleware_outcome import send_outcome
from ipt_fhir.fhir.jsonio import dump_json
from ipt_fhir.fhir.outcome import FHIRError, error, operation_outcome
from ipt_fhir.settings import Settings

from . import audit

log = logging.getLogger("ipt_fhir.security")

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
# Set in a request's scope once nothing waits for it any more (api/errors.py: cut off at shutdown): its
# answer must leave without yielding to the event loop, so its audit record is written on the loop itself.
# That write waits for the writer, which a write still running in a thread may hold (about 2 s behind a
# 5,000-entry transaction, measured): the loop, past its grace period, answers nothing else meanwhile.
ANSWER_AT_ONCE = "ipt_fhir.answer_at_once"
_API_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class InsecureConfiguration(RuntimeError):
    pass


def check_startup(settings: Settings, host: str | None = None) -> None:
    """The rule for real deployments (called by `ipt-fhir serve` and by the app factory when it reads its
    settings from the environment): without authorization the server only runs on the embedded SQLite
    database bound to localhost, and says so in the log; any other configuration refuses to start."""
    host = host or settings.host
    if settings.auth == "off":
        if not settings.is_sqlite or host not in LOCAL_HOSTS:
            raise InsecureConfiguration(
                "IPT_FHIR_AUTH=off is allowed only on the embedded SQLite database bound to localhost; "
                "set IPT_FHIR_AUTH=smart with IPT_FHIR_JWKS, IPT_FHIR_JWT_ISSUER and IPT_FHIR_JWT_AUDIENCE")
        log.warning("authorization is OFF (IPT_FHIR_AUTH=off): every request has full access; "
                    "for local development on the embedded SQLite database only")
        return
    missing = [name for name, value in (("IPT_FHIR_JWKS", settings.jwks or settings.jwt_hs256_secret),
                                        ("IPT_FHIR_JWT_ISSUER", settings.jwt_issuer),
                                        ("IPT_FHIR_JWT_AUDIENCE", settings.jwt_audience)) if not value]
    if missing:
        raise InsecureConfiguration(f"IPT_FHIR_AUTH=smart needs {', '.join(missing)}")
    if settings.jwt_hs256_secret:
        if not settings.is_sqlite or host not in LOCAL_HOSTS:
            raise InsecureConfiguration("IPT_FHIR_JWT_HS256_SECRET (HS256 tokens) is for development on "
                                        "localhost only; use RS256/ES256 keys from IPT_FHIR_JWKS")
        log.warning("HS256 development tokens are accepted (IPT_FHIR_JWT_HS256_SECRET)")


API_HEADER_BYTES = [(k.lower().encode(), v.encode()) for k, v in _API_HEADERS.items()]
_NOSNIFF = (b"x-content-type-options", b"nosniff")


class SecurityMiddleware:
    """Plain ASGI (no per-request task or Request/Response wrapping): security headers on every
    response, and — when auditing — the request's AuditEvents written before its response leaves. If
    that write fails the client gets a 500 instead of unaudited data."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        api = path.startswith(("/fhir", "/.well-known"))
        extra = API_HEADER_BYTES if api else [_NOSNIFF]
        collector = token = None
        if self.settings.audit_enabled and path.startswith("/fhir") and path != "/fhir/metadata" \
                and scope["method"] != "OPTIONS":
            client = scope.get("client")
            collector = audit.Collector(client_address=client[0] if client else None,
                                        server_url=fhir_base_of(scope))
            token = audit.start(collector)
        replaced = False

        async def secured_send(message: Message) -> None:
            nonlocal replaced
            if replaced:
                return  # the app's own response was withheld: its audit record could not be written
            if message["type"] == "http.response.start":
                if collector is not None:
                    flush = (scope["app"].state.database, collector, message["status"])
                    try:
                        if scope.get(ANSWER_AT_ONCE):
                            audit.flush(*flush)
                        else:
                            await run_in_threadpool(audit.flush, *flush)
                    except Exception:  # noqa: BLE001 - no disclosure without an audit record
                        log.exception("writing the audit record failed")
                        replaced = True
                        await _send_unaudited(send, extra)
                        return
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (name, value) for name, value in extra if name not in present]
            await send(message)

        try:
            await self.app(scope, receive, secured_send)
        finally:
            if token is not None:
                audit.stop(token)


async def _send_unaudited(send: Send, extra: list[tuple[bytes, bytes]]) -> None:
    await send_outcome(send, FHIRError(500, [error("exception", "The access could not be audited")]), extra)


class FhirCORSMiddleware(CORSMiddleware):
    """Starlette's CORS, with a refused preflight (an origin, method or header not allowed) answered as
    every error is: an OperationOutcome naming what was refused, instead of a plain-text line."""

    def preflight_response(self, request_headers):  # noqa: ANN001, ANN201 - Starlette's signature
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-type")}
        issue = error("forbidden", f"CORS preflight refused: {response.body.decode('latin-1')}")
        return Response(dump_json(operation_outcome([issue])), status_code=response.status_code, headers=headers,
                        media_type="application/fhir+json; charset=utf-8")


def install(app: FastAPI, settings: Settings) -> None:
    from ipt_fhir.fhir import jsonio

    jsonio.MAX_DEPTH = settings.max_json_depth
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if origins:
        # Added before (so inside) the security headers: the preflight answers CORS gives itself get them too.
        app.add_middleware(
            FhirCORSMiddleware, allow_origins=origins, allow_credentials=False,
            allow_methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            # every request header the API reads (README): conditional reads and writes, gzip bodies,
            # the caller's request id, a Binary's security context
            allow_headers=["Authorization", "Content-Type", "Accept", "If-Match", "If-None-Exist",
                           "If-None-Match", "If-Modified-Since", "Prefer", "Content-Encoding", "X-Request-ID",
                           "X-Correlation-ID", "X-Security-Context"],
            # X-Progress and Retry-After: a browser client polling a bulk job reads them
            expose_headers=["ETag", "Location", "Last-Modified", "Content-Location", "WWW-Authenticate",
                            "X-Progress", "Retry-After", "X-Request-ID", "X-Correlation-ID", "X-Security-Context"],
        )
    app.add_middleware(SecurityMiddleware, settings=settings)
