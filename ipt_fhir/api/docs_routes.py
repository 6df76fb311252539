"""/docs (Swagger UI) and /redoc from assets shipped in the package: clinics often run without internet,
so nothing is loaded from a CDN (ReDoc's Google Fonts link is off too)."""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from . import openapi

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_PREFIX = "/static/docs"


def install(app: FastAPI) -> None:
    openapi.install(app)
    app.mount(STATIC_PREFIX, StaticFiles(directory=STATIC_DIR), name="docs-static")
    spec_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=spec_url, title=f"{app.title} — API docs",
            swagger_js_url=f"{STATIC_PREFIX}/swagger-ui-bundle.js", swagger_css_url=f"{STATIC_PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{STATIC_PREFIX}/favicon.png",
            swagger_ui_parameters={"docExpansion": "none", "defaultModelsExpandDepth": 0, "tryItOutEnabled": False,
                                   "displayRequestDuration": True, "filter": True})

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=spec_url, title=f"{app.title} — API reference",
                              redoc_js_url=f"{STATIC_PREFIX}/redoc.standalone.js",
                              redoc_favicon_url=f"{STATIC_PREFIX}/favicon.png", with_google_fonts=False)
