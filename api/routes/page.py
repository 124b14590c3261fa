"""The web page (built by Vite into api/web/dist) at / and its assets under /static."""

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

WEB_DIST = Path(__file__).resolve().parents[1] / "web" / "dist"


def register_page(app: FastAPI) -> None:
    if not (WEB_DIST / "index.html").is_file():
        return  # an API-only install (no npm build): the HTTP API still works
    app.mount("/static", StaticFiles(directory=WEB_DIST), name="static")
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    def page() -> FileResponse:
        return FileResponse(WEB_DIST / "index.html")

    app.include_router(router)
