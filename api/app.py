"""The FastAPI application: jobs, motion uploads, models, health, downloads and the web page.

No `from __future__ import annotations` here: FastAPI must see the route annotations as objects, and the
`Owner` dependency type is local to create_app."""

import hashlib
import json
import secrets
import time
import uuid
from pathlib import Path
from typing import Annotated

import redis
from fastapi import Depends, FastAPI, File, Form, Header, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from api.schemas import GenerateRequest
from models.media.flow_kinds import FLOW_KINDS, RAW_FLOW_SUFFIXES, VIDEO_SUFFIXES
from models.registry import load_registry
from worker.jobs import JobStore, queue_name
from worker.settings import Settings, get_settings
from worker.storage import LocalStorage, make_storage

WEB_DIST = Path(__file__).parent / "web" / "dist"
UPLOAD_SUFFIXES = {*VIDEO_SUFFIXES, *RAW_FLOW_SUFFIXES}


def hash_key(key: str) -> str:
    # API keys are 32 random bytes: a plain SHA-256 is enough (no dictionary to attack, unlike passwords)
    return hashlib.sha256(key.encode()).hexdigest()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    if not settings.signing_key:
        settings = settings.model_copy(update={"signing_key": secrets.token_hex(32)})
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5)
    store = JobStore(client, settings.job_ttl_s)
    storage = make_storage(settings)
    registry = load_registry(settings.model_registry)
    uploads = settings.data_dir / "uploads"
    from celery import Celery

    celery = Celery("dvd360", broker=settings.redis_url)
    app = FastAPI(title="dvd360", description="Text (and motion) to 360° video (360DVD).", version="0.1.0")

    @app.exception_handler(redis.ConnectionError)
    @app.exception_handler(redis.TimeoutError)
    async def redis_down(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": "the job store is unavailable; retry shortly"}, 503, {"Retry-After": "5"})

    def owner(
        x_api_key: Annotated[str | None, Header()] = None, authorization: Annotated[str | None, Header()] = None
    ) -> str:
        if not settings.auth:
            return "anonymous"
        key = x_api_key or (authorization[7:] if authorization and authorization.startswith("Bearer ") else None)
        name = client.get(f"dvd360:apikey:{hash_key(key)}") if key else None
        if name is None:
            raise HTTPException(401, "missing or unknown API key: send it in the X-API-Key header")
        return name.decode()

    Owner = Annotated[str, Depends(owner)]

    def public(job: dict) -> dict:
        view = {k: v for k, v in job.items() if k not in ("owner", "deliveries")}
        view["request"] = {k: v for k, v in job["request"].items() if k != "flow_path"}
        outputs = {}
        if job["state"] == "succeeded":
            for name, key in job["outputs"].items():
                outputs[f"{name}_url"], outputs["expires_at"] = storage.url(key, settings.url_expiry_s)
        view["outputs"] = outputs
        if job["state"] == "queued":
            depth = client.llen(queue_name(job["request"]["base_model"]))
            view["queue_position"] = int(depth)
        return view

    def own_job(job_id: str, who: str) -> dict:
        job = store.get(job_id) if len(job_id) == 32 else None
        if job is None or job["owner"] != who:
            raise HTTPException(404, f"no job {job_id!r}")
        return job

    @app.post("/generate", status_code=202)
    def generate(body: GenerateRequest, who: Owner) -> JSONResponse:
        if body.base_model not in registry:
            raise HTTPException(
                422, f"base_model {body.base_model!r} is unknown; use one of {', '.join(registry.names())}"
            )
        if body.height > settings.max_height:
            raise HTTPException(422, f"height {body.height} is above this server's maximum {settings.max_height}")
        request = body.model_dump()
        if body.flow_id:
            raw = client.get(f"dvd360:flow:{body.flow_id}")
            flow = json.loads(raw) if raw else None
            if flow is None or flow["owner"] != who:
                raise HTTPException(422, f"flow_id {body.flow_id!r} is unknown; upload it with POST /flows first")
            request.update(flow_path=flow["path"], flow_kind=flow["kind"])
        job = store.create(who, request)
        celery.send_task("dvd360.generate", args=[job["id"]], queue=queue_name(body.base_model))
        return JSONResponse(public(job), 202, {"Location": f"/jobs/{job['id']}"})

    @app.post("/flows", status_code=201)
    def upload_flow(
        who: Owner,
        file: Annotated[UploadFile, File(description="Flow video, raw flow (.npy/.npz/.flo) or a 360° clip.")],
        kind: Annotated[str, Form(description="flow_video, raw_flow or panorama_clip")] = "flow_video",
    ) -> dict:
        from models.media.errors import FlowInputError
        from models.media.flow_video import load_flow_condition

        if kind not in FLOW_KINDS:
            raise HTTPException(422, f"kind {kind!r} is unknown; use one of {', '.join(FLOW_KINDS)}")
        suffix = Path(file.filename or "").suffix.lower()
        if suffix not in UPLOAD_SUFFIXES:
            raise HTTPException(422, f"file type {suffix or 'none'!r} is not accepted; use {sorted(UPLOAD_SUFFIXES)}")
        flow_id = uuid.uuid4().hex
        path = uploads / who.replace("/", "_") / f"{flow_id}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        limit, size = settings.max_upload_mb * 1024 * 1024, 0
        with path.open("wb") as out:
            while chunk := file.file.read(1 << 20):
                size += len(chunk)
                if size > limit:
                    out.close()
                    path.unlink()
                    raise HTTPException(413, f"upload is larger than {settings.max_upload_mb} MB")
                out.write(chunk)
        try:
            frames = len(load_flow_condition(path, kind, 8, 64, 128))
        except FlowInputError as exc:
            path.unlink()
            raise HTTPException(422, str(exc)) from exc
        record = {"id": flow_id, "owner": who, "path": str(path), "kind": kind, "name": file.filename, "bytes": size}
        client.set(f"dvd360:flow:{flow_id}", json.dumps(record), ex=settings.job_ttl_s)
        return {"id": flow_id, "kind": kind, "bytes": size, "frames_checked": frames}

    @app.get("/jobs/{job_id}")
    def get_job(job_id: str, who: Owner) -> dict:
        return public(own_job(job_id, who))

    @app.get("/jobs")
    def list_jobs(
        who: Owner, offset: Annotated[int, Query(ge=0)] = 0, limit: Annotated[int, Query(ge=1, le=100)] = 20
    ) -> dict:
        jobs, total = store.list(who, offset, limit)
        return {"jobs": [public(j) for j in jobs], "total": total, "offset": offset, "limit": limit}

    @app.post("/jobs/{job_id}/cancel")
    @app.delete("/jobs/{job_id}")
    def cancel(job_id: str, who: Owner) -> dict:
        job = own_job(job_id, who)
        store.request_cancel(job_id)
        if job["state"] == "queued":  # never runs: the task sees the flag and the final state
            job = store.update(job_id, state="canceled", finished_at=time.time())
        return public(store.get(job_id) or job)

    @app.get("/models")
    def models() -> dict:
        return {
            "models": [
                {
                    "name": n,
                    "description": registry.get(n).description,
                    "available": not registry.get(n).missing_paths(),
                }
                for n in registry.names()
            ]
        }

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        try:
            client.ping()
            storage.ping()
        except Exception as exc:  # any backend failure means "not ready", reported, never a 500
            return JSONResponse({"status": "unavailable", "reason": str(exc)}, 503, {"Retry-After": "5"})
        return JSONResponse({"status": "ready"})

    if isinstance(storage, LocalStorage):

        @app.get("/files/{key:path}")
        def download(key: str, expires: int, sig: str) -> FileResponse:
            if not storage.verify(key, expires, sig):
                raise HTTPException(403, "this download link is invalid or expired; fetch the job again")
            path = storage.path(key)
            if not path.is_file():
                raise HTTPException(404, "no such file")
            return FileResponse(path)

    if (WEB_DIST / "index.html").is_file():
        app.mount("/static", StaticFiles(directory=WEB_DIST), name="static")

        @app.get("/", include_in_schema=False)
        def page() -> FileResponse:
            return FileResponse(WEB_DIST / "index.html")

    return app
