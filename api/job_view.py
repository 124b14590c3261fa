"""A job record as its owner sees it: no owner or internal fields, absolute download links, queue position, timings."""

from __future__ import annotations

import time
from typing import Any

from fastapi import Request

from worker.jobs import queue_name

HIDDEN_FIELDS = ("owner", "deliveries")
HIDDEN_REQUEST_FIELDS = ("flow_key",)


def base_url(request: Request, public_url: str | None) -> str:
    """Where clients reach this API: the configured public URL (behind a proxy), else the request's own base URL."""
    return (public_url or str(request.base_url)).rstrip("/")


def absolute(url: str, base: str) -> str:
    return f"{base}{url}" if url.startswith("/") else url  # local links are paths; S3 presigned links are absolute


def public_job(job: dict[str, Any], svc, base: str) -> dict[str, Any]:
    view = {k: v for k, v in job.items() if k not in HIDDEN_FIELDS}
    view["request"] = {k: v for k, v in job["request"].items() if k not in HIDDEN_REQUEST_FIELDS}
    outputs = {}
    if job["state"] == "succeeded":
        for name, key in job["outputs"].items():
            url, outputs["expires_at"] = svc.storage.url(key, svc.settings.url_expiry_s)
            outputs[f"{name}_url"] = absolute(url, base)
    view["outputs"] = outputs
    if job["state"] == "queued":
        view["queue_position"] = int(svc.redis.llen(queue_name(job["request"]["base_model"])))
    start, end = job["started_at"], job["finished_at"]
    view["timings"] = {
        "queued_s": round((start or end or time.time()) - job["created_at"], 3),
        "running_s": round((end or time.time()) - start, 3) if start else None,
        "total_s": round(end - job["created_at"], 3) if end else None,
        "pipeline_s": job.get("pipeline_s"),
    }
    return view
