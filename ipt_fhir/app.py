"""The ASGI application: wiring of settings, database, services and routers."""
from __future__ import annotations

from datetime import datetime, timezone

from fastapi import Depends, FastAPI

from ipt_fhir.api import meta_routes, metadata_routes, rest_routes, search_routes, validate_routes
from ipt_fhir.api import bulk_routes, bundle_routes
from ipt_fhir.api import ipt_routes
from ipt_fhir.api import docs_routes, ops_routes
from ipt_fhir.api import security_routes
from ipt_fhir.api.rest_dispatch import RestFrontDoor
from ipt_fhir.api.security_deps import authorize
from ipt_fhir.security import middleware as security
from ipt_fhir.api.body_limit import BodyLimitMiddleware
from ipt_fhir.api.content_coding import ContentCodingMiddleware
from ipt_fhir.api.proxy_headers import ProxyHeadersMiddleware
from ipt_fhir.api.trailing_slash import TrailingSlashRoute
from ipt_fhir.api.errors import install_error_handlers
from ipt_fhir.services import ipt as ipt_layer
from ipt_fhir.services.history import HistoryService
from ipt_fhir.services.resources import ResourceService
from ipt_fhir.settings import Settings, get_settings
from ipt_fhir.store.database import Database


def create_app(settings: Settings | None = None, database: Database | None = None) -> FastAPI:
    if settings is None:  # a real run (serve, uvicorn --factory): refuse unsafe configurations
        settings = get_settings()
        security.check_startup(settings)
    database = database or Database(settings.database_url, pool_size=settings.db_pool_size,
                                    index_worker=settings.index_worker == "on")

    app = FastAPI(
        title="ipt-fhir",
        version="0.1.0",
        description="FHIR R4 (4.0.1) server and system of record for Interpersonal Psychotherapy. "
        "FHIR base: `/fhir`. JSON only (`application/fhir+json`).",
        docs_url=None, redoc_url=None, lifespan=ops_routes.lifespan,  # docs from local assets, below
    )
    app.state.settings = settings
    app.state.database = database
    app.state.started_at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    app.state.resource_service = ResourceService(database)
    app.state.history_service = HistoryService(database, settings)
    # IPT layer: profiles/terminology registered with the validator, write hook, operations.
    app.state.ipt_conformance = ipt_layer.install(settings.canonical_base)
    app.state.ipt_service = ipt_layer.IptService(database, settings.canonical_base)

    install_error_handlers(app)  # first: its middleware must be the innermost (errors.UnexpectedErrorMiddleware)

    # gzip/deflate request bodies decoded (their decoded size bounded too), gzip responses (content_coding.py)
    app.add_middleware(ContentCodingMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)  # bytes on the wire

    security.install(app, settings)  # security headers, audit per request, CORS (IPT_FHIR_CORS_ORIGINS)
    secured = [Depends(authorize)]  # authentication + coarse scope check on every /fhir route but metadata

    # Order matters: the REST routes must not shadow the IPT conformance resources before them, and their
    # type and id segments never take '$operation' or '_reserved' names (see rest_routes). The hot REST
    # interactions usually reach their handlers through the front door (api/rest_dispatch.py); what it
    # leaves to FastAPI pays FastAPI's price per route tried, hence REST right after IPT.
    app.include_router(security_routes.router)  # /fhir/.well-known/smart-configuration, public
    app.include_router(ipt_routes.router, dependencies=secured)  # IPT operations and conformance resources
    app.include_router(metadata_routes.router)  # before rest_routes, whose /{type} would take POST /metadata
    app.include_router(rest_routes.router, dependencies=secured)
    app.include_router(validate_routes.router, dependencies=secured)
    app.include_router(meta_routes.router, dependencies=secured)  # before search: Patient/[id]/$meta is no compartment
    app.include_router(search_routes.router, dependencies=secured)
    app.include_router(bundle_routes.router, dependencies=secured)  # POST /fhir (batch/transaction)
    bulk_routes.install(app, dependencies=secured)  # $import, $export
    ops_routes.install(app)  # /healthz /readyz /metrics; request ids, JSON access log, metrics
    docs_routes.install(app)  # /openapi.json, /docs, /redoc (no CDN)
    # Outermost: whatever reads the client address or the X-Forwarded-* headers sees them only from a
    # trusted proxy (api/proxy_headers.py).
    app.add_middleware(ProxyHeadersMiddleware, trusted=settings.forwarded_allow_ips)
    # In front of all of them: read, vread, create, update, patch, delete and type search without
    # FastAPI's route search and dependency solving, for exactly the requests FastAPI would send to
    # those same handlers (rest_dispatch.py).
    app.router.routes.insert(0, RestFrontDoor(app, authorize))
    # Behind all of them: `/fhir/Patient/` routed again as `/fhir/Patient`, not redirected (trailing_slash.py).
    app.router.routes.append(TrailingSlashRoute(app.router))
    return app
