"""GET /docs: Swagger UI from the page's own build (copied from the pinned npm `swagger-ui-dist` into
api/web/dist/docs/ by vite.config.js), never from a CDN, so the API docs work offline.

ReDoc is not offered: its npm package pulls React and more for a second view of the same OpenAPI document.
The app must be created with docs_url=None, redoc_url=None so that FastAPI's CDN pages do not answer first."""

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, PlainTextResponse, Response

from api.routes.page import WEB_DIST

DOCS_ASSETS = WEB_DIST / "docs"
DOCS_ASSETS_URL = "/static/docs"  # where the API serves dist/docs/ (dist/ is mounted at /static)
REQUIRED = ("swagger-ui-bundle.js", "swagger-ui.css")
NOT_BUILT = (
    "The API docs page is not built: run `bash scripts/setup.sh` (or `make serve`), which builds api/web/dist with "
    "Swagger UI in it. The OpenAPI document itself is at /openapi.json."
)


def register_docs(app: FastAPI, assets: Path = DOCS_ASSETS) -> None:
    """Serve /docs from local Swagger UI files, or a 503 that says how to build them (never a blank page)."""

    @app.get("/docs", include_in_schema=False)
    def docs(request: Request) -> Response:
        if not all((assets / name).is_file() for name in REQUIRED):
            return PlainTextResponse(NOT_BUILT, 503)
        # behind a proxy that strips a path prefix, every URL the browser follows needs it back
        prefix = request.scope.get("root_path", "").rstrip("/")
        html: HTMLResponse = get_swagger_ui_html(
            openapi_url=prefix + (app.openapi_url or "/openapi.json"),
            title=f"{app.title} · API docs",
            swagger_js_url=f"{prefix}{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{prefix}{DOCS_ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{prefix}{DOCS_ASSETS_URL}/favicon-32x32.png",
        )
        return html
