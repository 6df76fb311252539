"""Operations: structured JSON logs with a request id, the FHIR interaction of each request, and
Prometheus metrics (requests and latency per interaction and resource type).

Nothing here logs patient data: no bodies, no query strings (search criteria carry names and birth
dates), no raw paths (they carry ids) — only the route template, e.g. `/fhir/{resource_type}/{resource_id}`.
"""
from __future__ import annotations

import contextvars
import functools
import json
import logging
import os
import re
import time
from datetime import datetime, timezone
from typing import Any

from ipt_fhir.fhir.resource_types import RESOURCE_TYPES
from ipt_fhir.http_dates import current_http_date

ACCESS_LOGGER = "ipt_fhir.access"
REQUEST_ID_HEADER = "x-request-id"

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("ipt_fhir_request_id", default=None)

_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
# A client's id this server does not keep is echoed (X-Correlation-Id) only as a plain header value: visible
# ASCII and inner spaces, and short (RFC 9110 5.5).
_ECHOABLE = re.compile(rb"[!-~](?:[ !-~]{0,254}[!-~])?")


# ---------------------------------------------------------------- interactions


# Per request, from a bounded set of (method, route template) pairs: the app's routes and methods.
@functools.lru_cache(maxsize=1024)
def interaction_of(method: str, route_path: str | None) -> str:
    """The FHIR interaction name (http.html) of a request, from its method and route template
    (route_template). Metrics, logs, the authorization check and the OpenAPI document all name it so."""
    if route_path is None:
        return "unmatched"
    if not route_path.startswith("/fhir"):
        return "other"
    rel = route_path[len("/fhir"):].strip("/")
    parts = [p.split(":", 1)[0] for p in rel.split("/")] if rel else []
    method = method.upper()
    if any("$" in p for p in parts):
        return "operation"
    if not parts:
        return "transaction" if method == "POST" else "search-system"
    if parts == ["metadata"]:
        return "capabilities"
    if parts[-1] == "_history":
        return {1: "history-system", 2: "history-type"}.get(len(parts), "history-instance")
    if len(parts) == 4 and parts[2] == "_history":
        return "vread"
    if parts[0] == "Patient" and (len(parts) == 3 or len(parts) == 4 and parts[3] == "_search"):
        return "search-compartment"  # Patient/[id]/[type], Patient/[id]/*, and their POST .../_search
    if parts[-1] == "_search":
        return "search-system" if len(parts) == 1 else "search-type"
    is_type_level = len(parts) == 1
    if method in ("GET", "HEAD"):
        return "search-type" if is_type_level else "read"
    if method == "POST":
        return "create" if is_type_level else "operation"
    return {"PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method, "other")


def route_template(route: Any) -> str | None:
    """The path template of the route that took a request (scope["route"]), without {x:convertor} types."""
    return getattr(route, "path_format", None) or getattr(route, "path", None)


def operation_name(route_path: str | None) -> str | None:
    if route_path and "$" in route_path:
        return route_path[route_path.rindex("$"):].split("/", 1)[0]
    return None


def resource_type_of(route_path: str | None, path_params: dict[str, Any] | None) -> str:
    """The resource type a request addresses; only known R4 types, so metric labels stay bounded."""
    candidate = (path_params or {}).get("resource_type")
    if candidate is None and route_path and route_path.startswith("/fhir/"):
        candidate = route_path[len("/fhir/"):].split("/", 1)[0]
    return candidate if candidate in RESOURCE_TYPES else ""


# ---------------------------------------------------------------- metrics


class _Metrics:
    """Created on first use: with PROMETHEUS_MULTIPROC_DIR set (ipt-fhir serve --workers N sets it),
    prometheus-client keeps the values in files shared by all worker processes."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        labels = ("interaction", "resource_type")
        self.requests = Counter("ipt_fhir_requests", "HTTP requests by FHIR interaction, resource type and status",
                                (*labels, "status"))
        self.latency = Histogram(
            "ipt_fhir_request_duration_seconds", "Request latency by FHIR interaction and resource type", labels,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.in_flight = Gauge("ipt_fhir_requests_in_flight", "Requests being served",
                               multiprocess_mode="livesum")
        # The labelled children, looked up once: `labels()` validates, stringifies and locks on each call.
        self._counted: dict[tuple[str, str, int], Any] = {}
        self._timed: dict[tuple[str, str], Any] = {}

    def record(self, interaction: str, resource_type: str, status: int, seconds: float) -> None:
        counter = self._counted.get((interaction, resource_type, status))
        if counter is None:
            counter = self._counted[(interaction, resource_type, status)] = \
                self.requests.labels(interaction, resource_type, str(status))
        histogram = self._timed.get((interaction, resource_type))
        if histogram is None:
            histogram = self._timed[(interaction, resource_type)] = self.latency.labels(interaction, resource_type)
        counter.inc()
        histogram.observe(seconds)


_metrics: _Metrics | None = None


def metrics() -> _Metrics:
    global _metrics
    if _metrics is None:
        _metrics = _Metrics()
    return _metrics


def prepare_multiprocess_metrics() -> str:
    """Before uvicorn forks workers: a fresh directory for prometheus-client's multiprocess mode
    (unless the operator set PROMETHEUS_MULTIPROC_DIR), inherited by every worker."""
    import tempfile

    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        path = tempfile.mkdtemp(prefix="ipt-fhir-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):  # stale files from an earlier run would add old counts
        if name.endswith(".db"):
            os.unlink(os.path.join(path, name))
    return path


def render_metrics() -> tuple[bytes, str]:
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

    metrics()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


# ---------------------------------------------------------------- middleware


# The Date header is the app's, not the ASGI server's: uvicorn writes a Date it refreshes about once a
# second, so about half the responses of a write carried a Last-Modified (the write's own second) later
# than their Date, which RFC 9110 8.8.2.1 forbids. `ipt-fhir serve` turns uvicorn's off (SERVER_OPTIONS).
# So too its proxy headers: the app reads them itself, from trusted proxies only (api/proxy_headers.py).
# And requests it cannot parse get an OperationOutcome, not its plain text (http_protocol.py).
SERVER_OPTIONS = {"date_header": False, "server_header": False, "proxy_headers": False,
                  "http": "ipt_fhir.http_protocol:FhirHttpToolsProtocol"}


class RequestContextMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware overhead): request id in and out, the response's Date, one access
    log line and the metrics per request."""

    def __init__(self, app) -> None:  # noqa: ANN001
        self.app = app
        self.log = logging.getLogger(ACCESS_LOGGER)

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # http.html#custom: the client may send X-Request-Id, which the server uses or replaces with its own;
        # "When the server assigned id is different to the client assigned id, the server SHOULD also return
        # the X-Correlation-Id header with the client's original id in it", which is otherwise "A client
        # assigned request id echoed back in the response". An id this server keeps is one it can log.
        request_id = correlation_id = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id" and request_id is None:
                candidate = value.decode("latin-1")
                if _CLIENT_REQUEST_ID.match(candidate):
                    request_id = candidate
                elif correlation_id is None and _ECHOABLE.fullmatch(value):
                    correlation_id = value
            elif name == b"x-correlation-id" and _ECHOABLE.fullmatch(value):
                correlation_id = value
        request_id = request_id or os.urandom(16).hex()  # as random as uuid4().hex, without the UUID object
        added = [(b"x-request-id", request_id.encode())]
        if correlation_id is not None:
            added.append((b"x-correlation-id", correlation_id))
        path = scope.get("path", "")  # before routing: a Mount rewrites it for its app
        token = request_id_var.set(request_id)
        status = 500
        started = time.perf_counter()
        m = metrics()
        m.in_flight.inc()

        async def send_with_id(message) -> None:  # noqa: ANN001
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], *added, (b"date", current_http_date().encode("latin-1"))]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            m.in_flight.dec()
            route = scope.get("route")
            route_path = route_template(route)
            if route_path is None and path.startswith("/static/"):
                route_path = "/static"  # documentation assets (a mount, not a route)
            interaction = interaction_of(scope["method"], route_path)
            rtype = resource_type_of(route_path, scope.get("path_params"))
            if interaction != "other":
                m.record(interaction, rtype, status, elapsed)
            if self.log.isEnabledFor(logging.INFO):  # before building the record's fields
                self.log.info("%s %s %d", scope["method"], route_path or "(no route)", status, extra={
                    "method": scope["method"], "route": route_path, "interaction": interaction,
                    "operation": operation_name(route_path), "resource_type": rtype or None, "status": status,
                    "duration_ms": round(elapsed * 1000, 2)})
            request_id_var.reset(token)


# ---------------------------------------------------------------- logging

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, and any `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = request_id_var.get()
        if rid:
            out["request_id"] = rid
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_") and value is not None:
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def log_config(level: str = "info", fmt: str = "json") -> dict:
    """A logging dictConfig for the server (uvicorn applies it in every worker). uvicorn's own access
    log is off: it prints raw paths with query strings; ours logs the route template."""
    formatter = ({"()": "ipt_fhir.observability.JsonFormatter"} if fmt == "json"
                 else {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"})
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "default",
                                "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            "uvicorn": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.error": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            "httpx": {"handlers": [], "level": "WARNING", "propagate": True},  # would log URLs with queries
        },
    }


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    import logging.config

    logging.config.dictConfig(log_config(level, fmt))
