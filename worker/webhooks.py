"""Webhooks: each job state change (queued by `worker.jobs.notify`) is posted to the job's `webhook_url` by a
Celery task on its own queue, retried with exponential backoff, so a slow receiver never holds a GPU worker and
a restart loses nothing (late acks). Deliveries may arrive out of order: the payload carries its state."""

from __future__ import annotations

import json
import time
from functools import lru_cache

import httpx
import redis

from worker.celery_app import app
from worker.jobs import JobStore
from worker.settings import get_settings
from worker.signing_key import signing_key
from worker.webhook_delivery import post_webhook, signature
from worker.webhook_targets import WebhookTargetError

MAX_ATTEMPTS = 6  # 1 + 5 retries over about a minute (2, 4, 8, 16, 32 s)


class WebhookFailed(Exception):
    pass


@lru_cache
def _store() -> JobStore:
    """One Redis connection pool per worker process, not one per delivery."""
    settings = get_settings()
    return JobStore(redis.Redis.from_url(settings.redis_url), settings.job_ttl_s)


@lru_cache
def _signing_key() -> str:
    """Webhooks are always signed: the configured key, else the deployment's generated one."""
    return signing_key(_store().redis, get_settings().signing_key)


def payload(job: dict, state: str) -> dict:
    """`state` is the event: a state, or "progress" (of a running job; `progress` says how far)."""
    return {
        "event": f"job.{state}",
        "job": {k: job.get(k) for k in ("id", "state", "created_at", "finished_at", "error", "seed", "progress")}
        | {"state": "running" if state == "progress" else state},
        "links": {"job": f"/jobs/{job['id']}"},  # outputs are signed per request: fetch the job for its URLs
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
def deliver(self, job_id: str, state: str) -> None:
    settings = get_settings()
    store = _store()
    job = store.get(job_id)
    if job is None:
        return
    url = job["request"]["webhook_url"]
    body = json.dumps(payload(job, state)).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Dvd360-Event": f"job.{state}",
        "X-Dvd360-Signature": signature(_signing_key(), body),  # lets receivers check the sender
    }
    attempt = {"event": state, "attempts": self.request.retries + 1}
    try:
        status = post_webhook(url, body, headers, settings.webhook_allow_private)
    except WebhookTargetError as exc:  # judged again now (DNS answers change); the address judged is the one used
        store.update(job_id, webhook=attempt | {"error": str(exc)})
        return
    except httpx.TransportError:
        store.update(job_id, webhook=attempt | {"status_code": None})
        raise
    store.update(job_id, webhook=attempt | {"status_code": status})
    if not 200 <= status < 300:
        raise WebhookFailed(f"{url} answered {status}")
