"""A job record as its owner sees it (`api.schemas.Job`): only the listed fields, absolute download links, queue
position and timings."""

from __future__ import annotations

import time

from fastapi import Request

from api.schemas import Job, JobTimings, Outputs
from core.records import JobRecord


def base_url(request: Request, public_url: str | None) -> str:
    """Where clients reach this API: the configured public URL (behind a proxy), else the request's own base URL."""
    return (public_url or str(request.base_url)).rstrip("/")


def absolute(url: str, base: str) -> str:
    return f"{base}{url}" if url.startswith("/") else url  # local links are paths; S3 presigned links are absolute


def public_job(job: JobRecord, svc, base: str) -> Job:
    outputs = Outputs()
    if job.state == "succeeded":
        for name, key in job.outputs.items():
            url, outputs.expires_at = svc.storage.url(key, svc.settings.url_expiry_s)
            setattr(outputs, f"{name}_url", absolute(url, base))
    now, start, end = time.time(), job.started_at, job.finished_at
    timings = JobTimings(
        queued_s=round((start or end or now) - job.created_at, 3),
        running_s=round((end or now) - start, 3) if start else None,
        total_s=round(end - job.created_at, 3) if end else None,
        pipeline_s=job.timings.pipeline_s,
        step_s=job.timings.step_s,
    )
    return Job(
        **job.model_dump(include=set(Job.model_fields) - {"outputs", "timings", "queue_position"}),
        outputs=outputs,
        timings=timings,
        queue_position=svc.store.position(job) if job.state == "queued" else None,
    )
