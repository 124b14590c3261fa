"""Job records in Redis (not only in Celery's result backend): what clients poll, with a TTL.

A record is one JSON string under `dvd360:job:<id>`; each owner's jobs are a sorted set by creation time; a
cancel request is a separate key the running task polls every denoising step. Two indexes let the reaper
(worker/reaper.py) find every job that has not finished (UNFINISHED_KEY: id -> owner) and every finished job whose
files must go when it expires (FINISHED_KEY: "id:owner" scored by finish time); both are kept here, in the one
write that changes a state.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal, get_args

import redis

from worker.events import publish
from worker.job_metrics import record_finished

TERMINAL = ("succeeded", "failed", "canceled")
WEBHOOK_QUEUE = "webhooks"
MAX_DELIVERIES = 3  # a job that kills its worker this often fails instead of looping forever
REPEATED_CRASH = "the job stopped its worker repeatedly (it may need more memory than the worker has); not retried"
UNFINISHED_KEY, FINISHED_KEY = "dvd360:unfinished", "dvd360:finished"
# what a webhook may ask for (`webhook_events`): running, progress, the final state; as Replicate's filter
WebhookEvent = Literal["start", "progress", "completed"]
DEFAULT_WEBHOOK_EVENTS: tuple[WebhookEvent, ...] = ("completed",)
PROGRESS_WEBHOOK_INTERVAL_MS = 2000


def queue_name(base_model: str) -> str:
    """One Celery queue per base model, so each worker keeps one pipeline warm (KEDA scales on it too)."""
    return f"gen.{base_model}"


def job_key(job_id: str) -> str:
    return f"dvd360:job:{job_id}"


def owner_key(owner: str) -> str:
    """An owner's jobs, a sorted set by creation time (GET /jobs pages through it)."""
    return f"dvd360:owner:{owner}"


def active_key(owner: str) -> str:
    """The set of an owner's queued and running jobs (the per-key cap counts it; finishing removes from it)."""
    return f"dvd360:active:{owner}"


def notify(celery, client: redis.Redis, job: dict[str, Any], event: str) -> None:
    """Queue a webhook delivery of `event` (a state, or "progress") if the job has a webhook that asked for it
    (`webhook_events`, default the final state only); progress at most once per 2 s per job."""
    request = job["request"]
    if not request.get("webhook_url"):
        return
    kind = "start" if event == "running" else "completed" if event in TERMINAL else event
    if kind not in get_args(WebhookEvent) or kind not in request.get("webhook_events", DEFAULT_WEBHOOK_EVENTS):
        return
    throttle = f"dvd360:webhook-progress:{job['id']}"
    if kind == "progress" and not client.set(throttle, 1, nx=True, px=PROGRESS_WEBHOOK_INTERVAL_MS):
        return
    celery.send_task("dvd360.webhook", args=[job["id"], event], queue=WEBHOOK_QUEUE)


class JobStore:
    def __init__(self, client: redis.Redis, ttl_s: int) -> None:
        self.redis, self.ttl_s = client, ttl_s

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
            "error_type": None,
            "seed": request.get("seed"),
            "outputs": {},
            "deliveries": 0,
        }
        pipe = self.redis.pipeline()
        pipe.set(job_key(job["id"]), json.dumps(job), ex=self.ttl_s)
        pipe.zadd(owner_key(owner), {job["id"]: now})
        pipe.expire(owner_key(owner), self.ttl_s)
        pipe.hset(UNFINISHED_KEY, job["id"], owner)
        # the job is queued right after this: the queue holds it then
        pipe.llen(queue_name(request["base_model"]))
        waiting = pipe.execute()[-1]
        self.publish(job["id"], "queued", {"state": "queued", "queue_position": waiting + 1})
        return job

    def publish(self, job_id: str, type_: str, data: dict[str, Any]) -> str:
        """Append an event to the job's event stream (worker/events.py)."""
        return publish(
            self.redis, job_id, type_, data, job_key=job_key(job_id), ttl_s=self.ttl_s, final=type_ in TERMINAL
        )

    def report_progress(self, celery, job_id: str, step: int, total: int, eta_s: float | None) -> None:
        """Record a finished denoising step, publish it, and queue a progress webhook if asked for (throttled)."""
        progress = {"step": step, "total": total, "percent": round(100 * step / total, 1)}
        job = self.update(job_id, progress=progress)
        if job["state"] == "running":  # not after a cancel or the reaper ended it
            self.publish(job_id, "progress", {**progress, "eta_s": eta_s})
            notify(celery, self.redis, job, "progress")

    def get(self, job_id: str) -> dict[str, Any] | None:
        raw = self.redis.get(job_key(job_id))
        return json.loads(raw) if raw else None

    def update(self, job_id: str, **fields: Any) -> dict[str, Any]:
        """Merge fields into the record atomically (the API cancels while the worker reports progress)."""
        return self._merge(job_id, fields)[1]

    def _merge(self, job_id: str, fields: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The state the record had just before this write, and the record after it."""
        key = job_key(job_id)
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
                        pipe.hdel(UNFINISHED_KEY, job_id)
                        pipe.zadd(FINISHED_KEY, {f"{job_id}:{job['owner']}": time.time()})
                    pipe.execute()
                    return previous, job
                except redis.WatchError:
                    continue

    def transition(self, celery, job_id: str, state: str, **fields: Any) -> dict[str, Any]:
        """Move a job to `state`; when it really changed, count a finished job and queue its webhook (the API
        cancels queued jobs with this, the reaper ends abandoned ones, workers do the rest). A failed or canceled
        job always carries an `error_type`."""
        now = time.time()
        if state in TERMINAL:
            fields["finished_at"] = now
        if state == "failed":
            fields.setdefault("error_type", "internal")
        elif state == "canceled":
            fields.setdefault("error_type", "canceled")
        previous, job = self._merge(job_id, {"state": state, **fields})
        if previous != state and job["state"] == state:
            if state in TERMINAL:
                record_finished(self.redis, job["request"]["base_model"], state, now - job["created_at"])
            self.publish(job_id, state, {k: job[k] for k in ("state", "error", "error_type") if job.get(k)})
            notify(celery, self.redis, job, state)
        return job

    def list(self, owner: str, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        key = owner_key(owner)
        ids = self.redis.zrevrange(key, offset, offset + limit - 1)
        jobs = [j for j in (self.get(i.decode() if isinstance(i, bytes) else i) for i in ids) if j]
        return jobs, int(self.redis.zcard(key))

    def request_cancel(self, job_id: str) -> None:
        self.redis.set(f"dvd360:cancel:{job_id}", 1, ex=self.ttl_s)

    def cancel_requested(self, job_id: str) -> bool:
        return bool(self.redis.exists(f"dvd360:cancel:{job_id}"))
