"""The FastAPI application: jobs, motion uploads, models, health, metrics, downloads and the web page.

No `from __future__ import annotations` here: FastAPI must see the route annotations as objects, and the
`Owner` dependency type is local to create_app."""

import json
import secrets
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import redis
from celery import Celery
from fastapi import Depends, FastAPI, File, Form, Header, HTTPException, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError

from api.auth import key_owner, presented_key
from api.idempotency import IdempotencyKeys, body_digest, wait_for_record
from api.limits import KeyLimits
from api.log_redaction import redact_access_log
from api.metrics import Metrics
from api.request_limits import RequestLimitsMiddleware
from api.schemas import GENERATE_REQUEST_BODY, GenerateRequest
from api.uploads import Uploads, public_flow
from models.registry import load_registry
from worker.jobs import JobStore, queue_name
from worker.settings import Settings, get_settings
from worker.storage import LocalStorage, make_storage
from worker.webhook_targets import webhook_target_error

WEB_DIST = Path(__file__).parent / "web" / "dist"
HIDDEN_REQUEST_FIELDS = ("flow_key",)


def parse_generate(data: Any) -> GenerateRequest:
    """Validate a JSON object or form fields; errors read like FastAPI's own 422s (loc starts with "body")."""
    try:
        return GenerateRequest.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    if not settings.signing_key:
        settings = settings.model_copy(update={"signing_key": secrets.token_hex(32)})
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5)
    store = JobStore(client, settings.job_ttl_s)
    storage = make_storage(settings)
    uploads = Uploads(client, storage, settings.job_ttl_s)
    registry = load_registry(settings.model_registry)
    limits = KeyLimits(client, settings.redis_url, settings.rate_limit, settings.max_active_jobs)
    idempotency = IdempotencyKeys(client, settings.idempotency_ttl_s)
    metrics = Metrics(client, [queue_name(n) for n in registry.names()])
    celery = Celery("dvd360", broker=settings.redis_url)
    app = FastAPI(title="dvd360", description="Text (and motion) to 360° video (360DVD).", version="0.1.0")
    redact_access_log()

    app.add_middleware(RequestLimitsMiddleware, upload_bytes=settings.max_upload_mb * 2**20)
    if origins := [o.strip() for o in settings.cors_origins.split(",") if o.strip()]:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["X-API-Key", "Authorization", "Content-Type", "Idempotency-Key"],
            expose_headers=["Location", "Retry-After"],
        )
    app.middleware("http")(metrics.middleware)

    @app.exception_handler(redis.ConnectionError)
    @app.exception_handler(redis.TimeoutError)
    async def redis_down(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": "the job store is unavailable; retry shortly"}, 503, {"Retry-After": "5"})

    def owner(
        x_api_key: Annotated[str | None, Header()] = None, authorization: Annotated[str | None, Header()] = None
    ) -> str:
        who = "anonymous"
        if settings.auth:
            key = presented_key(x_api_key, authorization)
            who = key_owner(client, key) if key else None
            if who is None:
                raise HTTPException(401, "missing or unknown API key: send it in the X-API-Key header")
        limits.check_rate(who)
        return who

    Owner = Annotated[str, Depends(owner)]

    def public(job: dict) -> dict:
        view = {k: v for k, v in job.items() if k not in ("owner", "deliveries")}
        view["request"] = {k: v for k, v in job["request"].items() if k not in HIDDEN_REQUEST_FIELDS}
        outputs = {}
        if job["state"] == "succeeded":
            for name, key in job["outputs"].items():
                outputs[f"{name}_url"], outputs["expires_at"] = storage.url(key, settings.url_expiry_s)
        view["outputs"] = outputs
        if job["state"] == "queued":
            view["queue_position"] = int(client.llen(queue_name(job["request"]["base_model"])))
        start, end = job["started_at"], job["finished_at"]
        view["timings"] = {
            "queued_s": round((start or end or time.time()) - job["created_at"], 3),
            "running_s": round((end or time.time()) - start, 3) if start else None,
            "total_s": round(end - job["created_at"], 3) if end else None,
            "pipeline_s": job.get("pipeline_s"),
        }
        return view

    def own_job(job_id: str, who: str) -> dict:
        job = store.get(job_id) if len(job_id) == 32 and job_id.isalnum() else None
        if job is None or job["owner"] != who:
            raise HTTPException(404, f"no job {job_id[:64]!r}")
        return job

    def accept(who: str, body: GenerateRequest, idempotency_key: str | None, upload=None, kind: str = "") -> Response:
        """Every check, then one job queued: from JSON (flow_id) or multipart (the file inline)."""
        if body.base_model not in registry:
            raise HTTPException(
                422, f"base_model {body.base_model!r} is unknown; use one of {', '.join(registry.names())}"
            )
        if body.height > settings.max_height:
            raise HTTPException(422, f"height {body.height} is above this server's maximum {settings.max_height}")
        if body.webhook_url and (reason := webhook_target_error(body.webhook_url, settings.webhook_allow_private)):
            raise HTTPException(422, reason)
        if upload is not None and body.flow_id:
            raise HTTPException(422, "send either a file or a flow_id, not both")
        flow = uploads.receive(who, upload.file, upload.filename, kind) if upload is not None else None
        if body.flow_id and (flow := uploads.get(who, body.flow_id)) is None:
            raise HTTPException(422, f"flow_id {body.flow_id!r} is unknown; upload it with POST /flows first")
        fields = body.model_dump()
        request = dict(fields)
        if flow is not None:
            request.update(flow_id=flow["id"], flow_key=flow["key"], flow_kind=flow["kind"])
        job_id = uuid.uuid4().hex
        if idempotency_key is not None:
            digest = body_digest(fields, flow["sha256"] if upload is not None else None)
            if (earlier := idempotency.claim(who, idempotency_key, digest, job_id)) is not None:
                if upload is not None:
                    uploads.discard(flow)
                job = wait_for_record(store.get, earlier)
                return JSONResponse(public(job), 202, {"Location": f"/jobs/{earlier}", "Idempotent-Replayed": "true"})
        try:
            limits.reserve_job(who, job_id)
        except HTTPException:
            if idempotency_key is not None:
                idempotency.release(who, idempotency_key)
            raise
        job = store.create(who, request, job_id)
        celery.send_task("dvd360.generate", args=[job_id], queue=queue_name(body.base_model))
        return JSONResponse(public(job), 202, {"Location": f"/jobs/{job_id}"})

    @app.post(
        "/generate",
        status_code=202,
        openapi_extra={"requestBody": GENERATE_REQUEST_BODY},
        summary="Queue a generation job (JSON, or multipart with the motion file inline)",
    )
    async def generate(
        request: Request, who: Owner, idempotency_key: Annotated[str | None, Header()] = None
    ) -> Response:
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            async with request.form(max_files=1, max_fields=40) as form:
                fields = {k: v for k, v in form.items() if isinstance(v, str)}
                kind = fields.pop("kind", "flow_video")
                upload = form.get("file")
                if isinstance(upload, str):
                    raise HTTPException(422, "the multipart field `file` must be a file upload")
                body = parse_generate(fields)
                return await run_in_threadpool(accept, who, body, idempotency_key, upload, kind)
        try:
            data = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            raise HTTPException(422, "the body must be a JSON object (or multipart/form-data with a file)") from None
        return await run_in_threadpool(accept, who, parse_generate(data), idempotency_key)

    @app.post("/flows", status_code=201)
    def upload_flow(
        who: Owner,
        file: Annotated[UploadFile, File(description="Flow video, raw flow (.npy/.npz/.flo) or a 360° clip.")],
        kind: Annotated[str, Form(description="flow_video, raw_flow or panorama_clip")] = "flow_video",
    ) -> dict:
        return public_flow(uploads.receive(who, file.file, file.filename, kind))

    @app.get("/jobs/{job_id}")
    def get_job(job_id: str, who: Owner) -> dict:
        return public(own_job(job_id, who))

    @app.get("/jobs")
    def list_jobs(
        who: Owner, offset: Annotated[int, Query(ge=0, le=10**6)] = 0, limit: Annotated[int, Query(ge=1, le=100)] = 20
    ) -> dict:
        jobs, total = store.list(who, offset, limit)
        return {"jobs": [public(j) for j in jobs], "total": total, "offset": offset, "limit": limit}

    @app.post("/jobs/{job_id}/cancel")
    @app.delete("/jobs/{job_id}")
    def cancel(job_id: str, who: Owner) -> dict:
        job = own_job(job_id, who)
        store.request_cancel(job_id)
        if job["state"] == "queued":  # never runs: the task sees the flag and the final state
            job = store.transition(celery, job_id, "canceled")
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

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        return metrics.response()

    if isinstance(storage, LocalStorage):

        @app.get("/files/{key:path}")
        def download(key: str, expires: int, sig: str) -> FileResponse:
            if not storage.verify(key, expires, sig):
                raise HTTPException(403, "this download link is invalid or expired; fetch the job again")
            try:
                path = storage.path(key)
            except ValueError:  # a signed key that leaves the folder: only a leaked signing key makes one
                raise HTTPException(404, "no such file") from None
            if not path.is_file():
                raise HTTPException(404, "no such file")
            return FileResponse(path)

    if (WEB_DIST / "index.html").is_file():
        app.mount("/static", StaticFiles(directory=WEB_DIST), name="static")

        @app.get("/", include_in_schema=False)
        def page() -> FileResponse:
            return FileResponse(WEB_DIST / "index.html")

    return app
