"""HTTP-wide security concerns as middleware: security headers, CORS, the audit collector per request,
and the startup rule on running without authorization."""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.middleware.cors import CORSMiddleware

from ipt_fhir.settings import Settings

from . import audit

log = logging.getLogger("ipt_fhir.security")

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
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


def install(app: FastAPI, settings: Settings) -> None:
    from ipt_fhir.fhir import jsonio

    jsonio.MAX_DEPTH = settings.max_json_depth
    @app.middleware("http")
    async def security_middleware(request: Request, call_next) -> Response:  # noqa: ANN001
        path = request.url.path
        collector = None
        token = None
        if settings.audit_enabled and path.startswith("/fhir") and path not in ("/fhir/metadata",) \
                and request.method != "OPTIONS":
            collector = audit.Collector(client_address=request.client.host if request.client else None,
                                        server_url=str(request.base_url).rstrip("/") + "/fhir")
            token = audit.start(collector)
        try:
            response = await call_next(request)
            if collector is not None:
                try:
                    await run_in_threadpool(audit.flush, request.app.state.database, collector, response.status_code)
                except Exception:  # noqa: BLE001 - no disclosure without an audit record
                    log.exception("writing the audit record failed")
                    from ipt_fhir.api.errors import outcome_response
                    from ipt_fhir.fhir.outcome import error

                    response = outcome_response(500, [error("exception", "The access could not be audited")])
        finally:
            if token is not None:
                audit.stop(token)
        if path.startswith(("/fhir", "/.well-known")):
            for name, value in _API_HEADERS.items():
                response.headers.setdefault(name, value)
        else:
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=origins, allow_credentials=False,
            allow_methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "Accept", "If-Match", "If-None-Exist",
                           "If-None-Match", "Prefer"],
            expose_headers=["ETag", "Location", "Last-Modified", "Content-Location", "WWW-Authenticate"],
        )
