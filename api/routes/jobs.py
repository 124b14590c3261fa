"""Jobs: submit (`POST /generate`, JSON or multipart with the motion file inline), read, list and cancel."""

import json
import typing
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from starlette.datastructures import FormData

from api.deps import Caller, Reader, Services, Svc, Writer
from api.event_hub import Hub
from api.job_headers import cancel_after_s, prefer_wait
from api.job_view import base_url, public_job
from api.openapi import GENERATE_BODY, errors
from api.schemas import Job, JobList
from api.submissions import accept, parse_generate
from core.records import JobRecord
from core.request import GenerationRequest
from core.retention import tombstone

router = APIRouter(tags=["jobs"])
JOB_ERRORS = errors(401, 404, 410, 429)
LOCATION = {"Location": {"description": "The job's URL (/jobs/{id}).", "schema": {"type": "string"}}}


def own_job(svc: Services, job_id: str, who: str) -> JobRecord:
    """The caller's job, 410 when it expired (its outputs were deleted), or 404 (another key's job is
    indistinguishable from a missing one)."""
    job = svc.store.get(job_id) if len(job_id) == 32 and job_id.isalnum() else None
    if job is None and len(job_id) == 32 and (gone := tombstone(svc.redis, job_id, who)) is not None:
        raise HTTPException(410, f"job {job_id} has expired and its files were deleted ({gone['reason']})")
    if job is None or job.owner != who:
        raise HTTPException(404, f"no job {job_id[:64]!r}")
    return job


LIST_FIELDS = {name for name, f in GenerationRequest.model_fields.items() if typing.get_origin(f.annotation) is list}


def form_fields(form: FormData) -> dict[str, Any]:
    """The text fields of a multipart body; a list field (webhook_events) may be repeated."""
    fields: dict[str, list[str]] = {}
    for name, value in form.multi_items():
        if isinstance(value, str):
            fields.setdefault(name, []).append(value)
    return {name: values if name in LIST_FIELDS else values[-1] for name, values in fields.items()}


async def _accept(
    request: Request, svc: Services, caller: Caller, idempotency_key: str | None, deadline: dict
) -> tuple[JobRecord, bool]:
    """The body as JSON, or multipart with the motion file inline, accepted as a job: (job, replayed?)."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        async with request.form(max_files=1, max_fields=40) as form:
            fields = form_fields(form)
            kind = fields.pop("kind", "flow_video")
            upload = form.get("file")
            if isinstance(upload, str):
                raise HTTPException(422, "the multipart field `file` must be a file upload")
            body = parse_generate(fields | deadline)
            return await run_in_threadpool(accept, svc, caller.owner, body, idempotency_key, upload, kind)
    try:
        data = json.loads(await request.body(), parse_constant=non_finite)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise HTTPException(
            422, "the body must be a JSON object with finite numbers (or multipart/form-data with a file)"
        ) from None
    body = parse_generate(data | deadline if isinstance(data, dict) else data)
    return await run_in_threadpool(accept, svc, caller.owner, body, idempotency_key)


def non_finite(constant: str) -> float:
    raise ValueError(f"{constant} is not a number this API accepts")


@router.post(
    "/generate",
    status_code=202,
    response_model=Job,
    openapi_extra={"requestBody": GENERATE_BODY},
    summary="Queue a generation job (JSON, or multipart with the motion file inline)",
    responses={
        201: {
            "model": Job,
            "description": "Prefer: wait=N, and the job finished within N seconds.",
            "headers": LOCATION,
        },
        202: {
            "description": "Queued (or, with Prefer: wait=N, still unfinished after N seconds).",
            "headers": LOCATION,
        },
        **errors(401, 409, 422, 429),
    },
)
async def create_job(
    request: Request,
    svc: Svc,
    caller: Writer,
    hub: Hub,
    idempotency_key: Annotated[
        str | None, Header(description="A retry with the same key and body replays the job.")
    ] = None,
    prefer: Annotated[str | None, Header(description="wait=N: answer with the finished job within N s (<= 60)")] = None,
    cancel_after: Annotated[str | None, Header(description="Deadline: 30s, 5m, 1h30m or seconds")] = None,
) -> JSONResponse:
    """`Prefer: wait=N` answers 201 with the finished job if it finishes within N seconds, else 202 with the job as it
    is then (`Preference-Applied: wait=N` either way). `Cancel-After` sets `deadline_s`."""
    wait_s = prefer_wait(prefer)
    deadline = {"deadline_s": seconds} if (seconds := cancel_after_s(cancel_after)) is not None else {}
    # a wait holds one of the key's stream slots: taken before the job is made, so a full key makes nothing
    watch = await hub.watch(caller) if wait_s is not None else None
    try:
        job, replayed = await _accept(request, svc, caller, idempotency_key, deadline)
        headers = {"Location": f"/jobs/{job.id}"}
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        status = 202
        if watch is not None:
            headers["Preference-Applied"] = f"wait={wait_s}"
            if await hub.finished_within(job.id, wait_s, watch):
                status = 201
            if not await run_in_threadpool(caller.still_valid):  # revoked while it waited: no job, no links
                raise HTTPException(
                    401, "the API key was revoked while the request waited", {"WWW-Authenticate": "Bearer"}
                )
            job = await run_in_threadpool(svc.store.get, job.id) or job  # as it is now, finished or not
    finally:
        if watch is not None:
            await watch.close()
    view = await run_in_threadpool(public_job, job, svc, base_url(request, svc.settings.public_url))
    return JSONResponse(view.model_dump(mode="json"), status, headers)


@router.get("/jobs/{job_id}", response_model=Job, responses=JOB_ERRORS)
def get_job(job_id: str, request: Request, svc: Svc, caller: Reader) -> Job:
    return public_job(own_job(svc, job_id, caller.owner), svc, base_url(request, svc.settings.public_url))


@router.get("/jobs", response_model=JobList, responses=errors(401, 422, 429))
def list_jobs(
    request: Request,
    svc: Svc,
    caller: Reader,
    offset: Annotated[int, Query(ge=0, le=10**6)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> JobList:
    """Your jobs, newest first."""
    jobs, total = svc.store.list(caller.owner, offset, limit)
    base = base_url(request, svc.settings.public_url)
    return JobList(jobs=[public_job(j, svc, base) for j in jobs], total=total, offset=offset, limit=limit)


def _cancel(job_id: str, request: Request, svc: Services, owner: str) -> Job:
    job = own_job(svc, job_id, owner)
    svc.store.request_cancel(job_id)
    if job.state == "queued":  # never runs: the task sees the flag and the final state
        job = svc.store.transition(job_id, "canceled")
    return public_job(svc.store.get(job_id) or job, svc, base_url(request, svc.settings.public_url))


@router.post("/jobs/{job_id}/cancel", response_model=Job, responses=JOB_ERRORS)
def cancel_job(job_id: str, request: Request, svc: Svc, caller: Writer) -> Job:
    """A queued job never runs; a running one stops at its next denoising step."""
    return _cancel(job_id, request, svc, caller.owner)


@router.delete("/jobs/{job_id}", response_model=Job, responses=JOB_ERRORS)
def delete_job(job_id: str, request: Request, svc: Svc, caller: Writer) -> Job:
    """The same as POST /jobs/{id}/cancel."""
    return _cancel(job_id, request, svc, caller.owner)
