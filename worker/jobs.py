"""Job records in Redis (not only in Celery's result backend): what clients poll, with a TTL.

A record is one JSON string under `dvd360:job:<id>`; each owner's jobs are a sorted set by creation time; a
cancel request is a separate key the running task polls every denoising step.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import redis

from worker.job_metrics import record_finished

TERMINAL = ("succeeded", "failed", "canceled")
WEBHOOK_QUEUE = "webhooks"


def queue_name(base_model: str) -> str:
    """One Celery queue per base model, so each worker keeps one pipeline warm (KEDA scales on it too)."""
    return f"gen.{base_model}"


def active_key(owner: str) -> str:
    """The set of an owner's queued and running jobs (the per-key cap counts it; finishing removes from it)."""
    return f"dvd360:active:{owner}"


def notify(celery, job: dict[str, Any]) -> None:
    """Queue a webhook delivery of the job's current state, if it has a webhook (from the API and workers)."""
    if job["request"].get("webhook_url"):
        celery.send_task("dvd360.webhook", args=[job["id"], job["state"]], queue=WEBHOOK_QUEUE)


class JobStore:
    def __init__(self, client: redis.Redis, ttl_s: int) -> None:
        self.redis, self.ttl_s = client, ttl_s

    @staticmethod
    def _key(job_id: str) -> str:
        return f"dvd360:job:{job_id}"

    def create(self, owner: str, request: dict[str, Any], job_id: str | None = None) -> dict[str, Any]:
        now = time.time()
        job = {
            "id": job_id or uuid.uuid4().hex,
            "owner": owner,
            "state": "queued",
            "request": request,
            "progress": {"step": 0, "total": request.get("steps", 0), "percent": 0.0},
            "created_at": now,
            "started_at": None,
            "finished_at": None,
            "error": None,
            "seed": request.get("seed"),
            "outputs": {},
            "deliveries": 0,
        }
        pipe = self.redis.pipeline()
        pipe.set(self._key(job["id"]), json.dumps(job), ex=self.ttl_s)
        pipe.zadd(f"dvd360:owner:{owner}", {job["id"]: now})
        pipe.expire(f"dvd360:owner:{owner}", self.ttl_s)
        pipe.execute()
        return job

    def get(self, job_id: str) -> dict[str, Any] | None:
        raw = self.redis.get(self._key(job_id))
        return json.loads(raw) if raw else None

    def update(self, job_id: str, **fields: Any) -> dict[str, Any]:
        """Merge fields into the record atomically (the API cancels while the worker reports progress)."""
        return self._merge(job_id, fields)[1]

    def _merge(self, job_id: str, fields: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The state the record had just before this write, and the record after it."""
        key = self._key(job_id)
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    job = json.loads(pipe.get(key) or "null")
                    if job is None:
                        raise KeyError(job_id)
                    previous = job["state"]
                    if previous in TERMINAL and fields.get("state") not in (None, previous):
                        return previous, job  # a finished job stays finished (a late progress write, a redelivery)
                    finishing = fields.get("state") in TERMINAL and job["state"] not in TERMINAL
                    job.update(fields)
                    pipe.multi()
                    pipe.set(key, json.dumps(job), keepttl=True)
                    if finishing:
                        pipe.srem(active_key(job["owner"]), job_id)
                    pipe.execute()
                    return previous, job
                except redis.WatchError:
                    continue

    def transition(self, celery, job_id: str, state: str, **fields: Any) -> dict[str, Any]:
        """Move a job to `state`; when it really changed, count a finished job and queue its webhook (the API
        cancels queued jobs with this, workers do the rest)."""
        now = time.time()
        if state in TERMINAL:
            fields["finished_at"] = now
        previous, job = self._merge(job_id, {"state": state, **fields})
        if previous != state and job["state"] == state:
            if state in TERMINAL:
                record_finished(self.redis, job["request"]["base_model"], state, now - job["created_at"])
            notify(celery, job)
        return job

    def list(self, owner: str, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        key = f"dvd360:owner:{owner}"
        ids = self.redis.zrevrange(key, offset, offset + limit - 1)
        jobs = [j for j in (self.get(i.decode() if isinstance(i, bytes) else i) for i in ids) if j]
        return jobs, int(self.redis.zcard(key))

    def request_cancel(self, job_id: str) -> None:
        self.redis.set(f"dvd360:cancel:{job_id}", 1, ex=self.ttl_s)

    def cancel_requested(self, job_id: str) -> bool:
        return bool(self.redis.exists(f"dvd360:cancel:{job_id}"))
