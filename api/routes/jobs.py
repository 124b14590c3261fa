"""Jobs: submit (`POST /generate`, JSON or multipart with the motion file inline), read, list and cancel."""

import json
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from api.deps import Reader, Services, Svc, Writer
from api.event_hub import Hub
from api.job_headers import cancel_after_s, prefer_wait
from api.job_view import base_url, public_job
from api.schemas import GENERATE_REQUEST_BODY
from api.submissions import accept, parse_generate
from worker.retention import tombstone

router = APIRouter(tags=["jobs"])


def own_job(svc: Services, job_id: str, who: str) -> dict:
    """The caller's job, 410 when it expired (its outputs were deleted), or 404 (another key's job is
    indistinguishable from a missing one)."""
    job = svc.store.get(job_id) if len(job_id) == 32 and job_id.isalnum() else None
    if job is None and len(job_id) == 32 and (gone := tombstone(svc.redis, job_id, who)) is not None:
        raise HTTPException(410, f"job {job_id} has expired and its files were deleted ({gone['reason']})")
    if job is None or job["owner"] != who:
        raise HTTPException(404, f"no job {job_id[:64]!r}")
    return job


@router.post(
    "/generate",
    status_code=202,
    openapi_extra={"requestBody": GENERATE_REQUEST_BODY},
    summary="Queue a generation job (JSON, or multipart with the motion file inline)",
)
async def generate(
    request: Request,
    svc: Svc,
    who: Writer,
    hub: Hub,
    idempotency_key: Annotated[str | None, Header()] = None,
    prefer: Annotated[str | None, Header(description="wait=N: answer with the finished job within N s (<= 60)")] = None,
    cancel_after: Annotated[str | None, Header(description="Deadline: 30s, 5m, 1h30m or seconds")] = None,
) -> Response:
    """`Prefer: wait=N` answers 201 with the finished job if it finishes within N seconds, else the usual 202
    (`Preference-Applied: wait=N` either way). `Cancel-After` sets `deadline_s`."""
    wait_s = prefer_wait(prefer)
    deadline = {"deadline_s": seconds} if (seconds := cancel_after_s(cancel_after)) is not None else {}
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        async with request.form(max_files=1, max_fields=40) as form:
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
            kind = fields.pop("kind", "flow_video")
            upload = form.get("file")
            if isinstance(upload, str):
                raise HTTPException(422, "the multipart field `file` must be a file upload")
            body = parse_generate(fields | deadline)
            job, replayed = await run_in_threadpool(accept, svc, who, body, idempotency_key, upload, kind)
    else:
        try:
            data = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            raise HTTPException(422, "the body must be a JSON object (or multipart/form-data with a file)") from None
        body = parse_generate(data | deadline if isinstance(data, dict) else data)
        job, replayed = await run_in_threadpool(accept, svc, who, body, idempotency_key)
    headers = {"Location": f"/jobs/{job['id']}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    status = 202
    if wait_s is not None:
        headers["Preference-Applied"] = f"wait={wait_s}"
        if await hub.finished_within(job["id"], wait_s):
            job, status = await run_in_threadpool(svc.store.get, job["id"]), 201
    return JSONResponse(public_job(job, svc, base_url(request, svc.settings.public_url)), status, headers)


@router.get("/jobs/{job_id}")
def get_job(job_id: str, request: Request, svc: Svc, who: Reader) -> dict:
    return public_job(own_job(svc, job_id, who), svc, base_url(request, svc.settings.public_url))


@router.get("/jobs")
def list_jobs(
    request: Request,
    svc: Svc,
    who: Reader,
    offset: Annotated[int, Query(ge=0, le=10**6)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict:
    jobs, total = svc.store.list(who, offset, limit)
    base = base_url(request, svc.settings.public_url)
    return {"jobs": [public_job(j, svc, base) for j in jobs], "total": total, "offset": offset, "limit": limit}


@router.post("/jobs/{job_id}/cancel")
@router.delete("/jobs/{job_id}")
def cancel(job_id: str, request: Request, svc: Svc, who: Writer) -> dict:
    """A queued job never runs; a running one stops at its next denoising step."""
    job = own_job(svc, job_id, who)
    svc.store.request_cancel(job_id)
    if job["state"] == "queued":  # never runs: the task sees the flag and the final state
        job = svc.store.transition(svc.celery, job_id, "canceled")
    return public_job(svc.store.get(job_id) or job, svc, base_url(request, svc.settings.public_url))
