"""GET /docs from local Swagger UI files (api/routes/docs.py): no CDN in the page, and a 503 that says what to run
when the page's bundle is not built."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.routes.docs import DOCS_ASSETS, REQUIRED, register_docs


def docs_client(assets: Path) -> TestClient:
    app = FastAPI(title="dvd360", docs_url=None, redoc_url=None)
    register_docs(app, assets)
    return TestClient(app)


def test_docs_load_swagger_ui_from_the_page_bundle(tmp_path) -> None:
    for name in REQUIRED:
        (tmp_path / name).write_text("/* a stand-in for the built file */")
    answer = docs_client(tmp_path).get("/docs")
    assert answer.status_code == 200
    html = answer.text
    assert "/static/docs/swagger-ui-bundle.js" in html and "/static/docs/swagger-ui.css" in html
    assert "'/openapi.json'" in html or '"/openapi.json"' in html
    assert "cdn." not in html and "https://" not in html, "the docs page still loads something from the internet"


def test_docs_without_the_built_bundle_say_how_to_build_it(tmp_path) -> None:
    answer = docs_client(tmp_path / "missing").get("/docs")
    assert answer.status_code == 503
    assert "scripts/setup.sh" in answer.text and "/openapi.json" in answer.text


def test_the_page_build_carries_swagger_ui() -> None:
    """The real build (scripts/setup.sh / make) puts the files where /docs looks for them."""
    assert all((DOCS_ASSETS / name).stat().st_size > 10_000 for name in REQUIRED), (
        f"{DOCS_ASSETS} lacks Swagger UI: run `cd api/web && npm run build`"
    )
