"""Operational endpoints for orchestrators and monitoring (outside the FHIR base, plain JSON):
/healthz (liveness), /readyz (database reachable, schema current, the server's IPT conformance resources
stored), /metrics (Prometheus)."""
from __future__ import annotations

import gc
import logging
import os
import time
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import AsyncIterator

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from ipt_fhir.observability import RequestContextMiddleware, render_metrics
from ipt_fhir.store import migrate
from ipt_fhir.store.database import Database

router = APIRouter(tags=["operations"])
log = logging.getLogger("ipt_fhir.server")


@lru_cache(maxsize=1)
def _head_revision() -> str | None:
    return migrate.head_revision("sqlite://")  # the script directory does not depend on the URL


def _schema_revision(db: Database) -> str | None:
    with db.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT version_num FROM alembic_version").fetchall()
    return rows[0][0] if rows else None


@router.get("/healthz", summary="Liveness: the process answers",
            responses={200: {"description": "Alive", "content": {"application/json": {
                "example": {"status": "ok"}}}}})
def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})


@router.get("/readyz", summary="Readiness: the database answers and its schema is the one this server needs",
            responses={
                200: {"description": "Ready", "content": {"application/json": {"example": {
                    "status": "ready", "database": "ok", "schema": "0003_ipt_read_model",
                    "schema_expected": "0003_ipt_read_model", "duration_ms": 1.2}}}},
                503: {"description": "Not ready (database unreachable or schema out of date)",
                      "content": {"application/json": {"example": {
                          "status": "not-ready", "database": "unreachable", "schema": None,
                          "schema_expected": "0003_ipt_read_model",
                          "detail": "OperationalError"}}}}})
async def readyz(request: Request) -> JSONResponse:
    db: Database = request.app.state.database
    started = time.perf_counter()
    expected = _head_revision()
    body: dict = {"status": "ready", "database": "ok", "schema": None, "schema_expected": expected}
    try:
        body["schema"] = await run_in_threadpool(_schema_revision, db)
    except Exception as exc:  # noqa: BLE001 - any failure to reach the database means not ready
        body.update(status="not-ready", database="unreachable", detail=type(exc).__name__)
    else:
        if body["schema"] != expected:
            body.update(status="not-ready", detail="schema out of date: run `ipt-fhir db upgrade`")
        elif not getattr(request.app.state, "conformance_stored", True) and \
                not await run_in_threadpool(_publish_conformance, request.app):
            body.update(status="not-ready", detail="the server's IPT conformance resources could not be stored")
    body["duration_ms"] = round((time.perf_counter() - started) * 1000, 2)
    return JSONResponse(body, status_code=200 if body["status"] == "ready" else 503,
                        headers={"Cache-Control": "no-store"})


@router.get("/metrics", summary="Prometheus metrics: requests and latency per FHIR interaction and type",
            responses={200: {"description": "Prometheus text exposition format",
                             "content": {"text/plain": {"example": (
                                 'ipt_fhir_requests_total{interaction="read",resource_type="CarePlan",'
                                 'status="200"} 42.0\n')}}}})
def prometheus_metrics() -> Response:
    body, media_type = render_metrics()
    return Response(body, media_type=media_type, headers={"Cache-Control": "no-store"})


def _warm_up() -> None:
    """Compile the validator's type tree before the first request (about 0.1 s). Built lazily, it is
    not safe for first requests arriving together in a fresh worker: a half-built type node is visible
    to other threads (seen as rare 500s on concurrent creates, tests/production/test_scale_out.py)."""
    try:
        from ipt_fhir.fhir.validation.compiler import type_node
        from ipt_fhir.fhir.validation.definitions import structures

        for name in structures()["types"]:
            type_node(name)
    except Exception:  # noqa: BLE001 - a failed warm-up only costs the first requests their speed
        log.warning("validator warm-up failed", exc_info=True)


@lru_cache(maxsize=1)  # once per process: later apps in it (tests) are not the worker's lifelong state
def _freeze_long_lived() -> None:
    """Everything built so far lives as long as the worker: the FHIR definitions and the compiled validator
    tree (about 240k objects; the search registry, built at the first search, is not among them). A full
    collection walks every tracked object, so each one took ~90 ms (measured under the create benchmark),
    a stall for every request in flight; frozen, those objects are never walked again and a full
    collection covers what requests left behind."""
    gc.collect()
    gc.freeze()


def _statistics(database) -> None:  # noqa: ANN001
    """SQLite planner statistics for a database that has none yet (store/statistics.py)."""
    try:
        database.ensure_statistics()
    except Exception:  # noqa: BLE001 - searches are slower without them, never wrong
        log.warning("could not gather SQLite planner statistics", exc_info=True)


def _publish_conformance(app: FastAPI) -> bool:
    """The server's IPT conformance resources into the store (services/ipt/publish.py), before the first
    request can read them. Without them the protocols, profiles and code systems the server names answer
    404, so the worker is not ready until they are stored: a database unreachable at start (or with an
    old schema) is tried again by /readyz, as it reports."""
    from ipt_fhir.services.ipt.publish import publish

    try:
        publish(app.state.database, app.state.ipt_conformance)
    except Exception:  # noqa: BLE001 - reported by /readyz, which tries again
        log.warning("could not store the server's IPT conformance resources yet", exc_info=True)
        app.state.conformance_stored = False
    else:
        app.state.conformance_stored = True
    return app.state.conformance_stored


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Graceful shutdown: uvicorn stops accepting connections on SIGTERM and lets in-flight requests
    finish (up to IPT_FHIR_SHUTDOWN_TIMEOUT seconds); bulk jobs running in this worker stop (an import
    resumes at the next start, an export is reported failed); then the database pool is closed."""
    await run_in_threadpool(_warm_up)
    await run_in_threadpool(_publish_conformance, app)
    await run_in_threadpool(_statistics, app.state.database)
    _freeze_long_lived()
    log.info("ipt-fhir worker started", extra={"pid": os.getpid()})
    yield
    runners = [r for r in (getattr(app.state, "import_jobs", None), getattr(app.state, "export_jobs", None)) if r]
    for runner in runners:
        runner.request_stop()
    deadline = time.monotonic() + app.state.settings.shutdown_timeout  # one wait for all of them
    left = [job for runner in runners for job in await run_in_threadpool(runner.wait_stopped, deadline)]
    if left:
        log.warning("bulk jobs still running at shutdown", extra={"jobs": left})
    database = getattr(app.state, "database", None)
    if database is not None:
        database.dispose()
    log.info("ipt-fhir worker stopped", extra={"pid": os.getpid()})


def install(app: FastAPI) -> None:
    """Request ids, access log and metrics for every request (outermost middleware), and the routes."""
    app.add_middleware(RequestContextMiddleware)
    app.include_router(router)
