"""Webhooks: each job state change (queued by `JobStore.notify`) is posted to the job's `webhook_url` by a Celery
task on its own queue, retried with exponential backoff, so a slow receiver never holds a GPU worker and a restart
loses nothing (late acks). Deliveries are signed the Standard Webhooks way (core/signing.py) and may arrive out of
order: the payload carries its state."""

from __future__ import annotations

import json
import time

import httpx

from core.records import JobRecord
from core.signing import webhook_headers
from core.webhook_targets import WebhookTargetError
from worker.celery_app import app
from worker.runtime import runtime
from worker.webhook_delivery import post_webhook

MAX_ATTEMPTS = 6  # 1 + 5 retries over about a minute (2, 4, 8, 16, 32 s)
PAYLOAD_FIELDS = ("id", "state", "created_at", "finished_at", "error", "seed", "progress")


class WebhookFailed(Exception):
    pass


def payload(job: JobRecord, event: str) -> dict:
    """`event` is a state, or "progress" (of a running job; `progress` says how far)."""
    fields = job.model_dump(include=set(PAYLOAD_FIELDS))
    return {
        "event": f"job.{event}",
        "job": {name: fields[name] for name in PAYLOAD_FIELDS} | {"state": "running" if event == "progress" else event},
        "links": {"job": f"/jobs/{job.id}"},  # outputs are signed per request: fetch the job for its URLs
        "sent_at": time.time(),
    }


@app.task(
    name="dvd360.webhook",
    bind=True,
    autoretry_for=(WebhookFailed, httpx.TransportError),
    retry_backoff=2,
    retry_jitter=False,
    max_retries=MAX_ATTEMPTS - 1,
)
def deliver(self, job_id: str, event: str, message_id: str | None = None) -> None:
    """POST one event; `message_id` (the `webhook-id`, the same on every retry) is set when the event is queued."""
    rt = runtime()
    job = rt.store.get(job_id)
    if job is None:
        return
    body = json.dumps(payload(job, event)).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Dvd360-Event": f"job.{event}",
        **webhook_headers(rt.signing_key, message_id or f"{job_id}.{event}", body),
    }
    attempt = {"event": event, "attempts": self.request.retries + 1}
    try:
        status = post_webhook(job.request.webhook_url, body, headers, rt.settings.webhook_allow_private)
    except WebhookTargetError as exc:  # judged again now (DNS answers change); the address judged is the one used
        rt.store.update(job_id, webhook=attempt | {"error": str(exc)})
        return
    except httpx.TransportError:
        rt.store.update(job_id, webhook=attempt | {"status_code": None})
        raise
    rt.store.update(job_id, webhook=attempt | {"status_code": status})
    if not 200 <= status < 300:
        raise WebhookFailed(f"{job.request.webhook_url} answered {status}")
