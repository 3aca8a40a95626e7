"""The API docs pages (Swagger UI at /docs, ReDoc at /redoc) served from a package's bundled assets.

FastAPI's own pages load their JavaScript from a CDN, so on a machine without internet /docs is a
blank page. The `fastapi-offline` package ships the same Swagger UI and ReDoc files; they are served
from /api-docs-assets and the pages point there. The asset path is the package's, not copied here.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["ASSETS_URL", "install_api_docs"]

ASSETS_URL = "/api-docs-assets"
_ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"


def install_api_docs(app: FastAPI) -> None:
    """Serve /docs and /redoc without any network access (the app is made with docs_url=redoc_url=None)."""
    app.mount(ASSETS_URL, StaticFiles(directory=_ASSETS), name="api-docs-assets")
    title = f"{app.title} API"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title=title,
                                   swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
                                   swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
                                   swagger_ui_parameters={"persistAuthorization": True})

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=app.openapi_url or "/openapi.json", title=title,
                              redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
                              redoc_favicon_url=f"{ASSETS_URL}/favicon.png", with_google_fonts=False)
