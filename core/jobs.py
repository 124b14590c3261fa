"""Job records in Redis (not only in Celery's result backend): what clients poll, with a TTL.

A record is one `JobRecord` as JSON under `dvd360:job:<id>`; each owner's jobs are a sorted set by creation time; a
cancel request is a separate key the running task polls every denoising step. Three indexes let the reaper
(worker/reaper.py) find every job that has not finished (UNFINISHED_KEY: id -> owner), every finished job whose
files must go when it expires (FINISHED_KEY: "id:owner" scored by finish time) and every deadline (DEADLINES_KEY);
all are kept here, in the one write that changes a state.

Queue messages, webhook deliveries and the reaper's requeues go through `tasks`, anything with Celery's
`send_task(name, args=..., queue=...)`: the API's Celery client, a worker's app.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Protocol

import redis

from core.deadlines import DEADLINES_KEY, deadline_at
from core.events import publish
from core.job_metrics import record_finished
from core.records import RECORD_VERSION, TERMINAL, FlowRef, JobRecord, JobState
from core.request import GenerationRequest
from core.settings import Settings

GENERATE_TASK, WEBHOOK_TASK = "dvd360.generate", "dvd360.webhook"
WEBHOOK_QUEUE = "webhooks"
MAX_DELIVERIES = 3  # a job that kills its worker this often fails instead of looping forever
REPEATED_CRASH = "the job stopped its worker repeatedly (it may need more memory than the worker has); not retried"
UNFINISHED_KEY, FINISHED_KEY = "dvd360:unfinished", "dvd360:finished"
PROGRESS_WEBHOOK_INTERVAL_MS = 2000
RECORD_GRACE_S = 3600  # a finished record outlives its files by this much


class TaskSender(Protocol):
    def send_task(self, name: str, args: list[Any], queue: str) -> Any: ...


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


def waiting_key(base_model: str) -> str:
    """A model's queued jobs in the order they were queued (a sorted set by time): where each stands, in O(log n)."""
    return f"dvd360:waiting:{base_model}"


def queue_position(rank: int | None) -> int:
    """Where a queued job stands, the same everywhere (GET /jobs/{id}, its `queued` events, the CLI): 1 is next.
    `rank`: its ZRANK in its model's waiting set (None for a job queued before 0.2: counted as next)."""
    return 1 if rank is None else rank + 1


def webhook_kind(event: str) -> str:
    """The `webhook_events` choice an event belongs to: start (running), progress, completed (a final state)."""
    return "start" if event == "running" else "completed" if event in TERMINAL else event


class JobStore:
    def __init__(self, client: redis.Redis, tasks: TaskSender, ttl_s: int, result_ttl_s: int) -> None:
        """`ttl_s`: how long a record is kept; a finished one at least as long as its outputs (`result_ttl_s`)."""
        self.redis, self.tasks, self.ttl_s, self.result_ttl_s = client, tasks, ttl_s, result_ttl_s

    @classmethod
    def from_settings(cls, client: redis.Redis, tasks: TaskSender, settings: Settings) -> JobStore:
        return cls(client, tasks, settings.job_ttl_s, settings.result_ttl_s)

    def create(self, owner: str, request: GenerationRequest, job_id: str, flow: FlowRef | None = None) -> JobRecord:
        """Write the record of an accepted (resolved) request and queue its task."""
        job = JobRecord(
            version=RECORD_VERSION,
            id=job_id,
            owner=owner,
            request=request,
            flow=flow,
            created_at=time.time(),
            seed=request.seed,
        )
        job.progress.total = request.steps or 0
        pipe = self.redis.pipeline()
        pipe.set(job_key(job.id), job.model_dump_json(), ex=self.ttl_s)
        pipe.zadd(owner_key(owner), {job.id: job.created_at})
        pipe.expire(owner_key(owner), self.ttl_s)
        pipe.hset(UNFINISHED_KEY, job.id, owner)
        if (at := deadline_at(job)) is not None:
            pipe.zadd(DEADLINES_KEY, {job.id: at})
        pipe.execute()
        position = self.enqueue(job)
        self.publish(job.id, "queued", {"state": "queued", "queue_position": position})
        return job

    def enqueue(self, job: JobRecord) -> int:
        """Send the job's task to its model's queue (at creation, and when the reaper requeues it), behind every job
        waiting there; returns its queue position."""
        pipe = self.redis.pipeline()
        pipe.zadd(waiting_key(job.request.base_model), {job.id: time.time()})
        pipe.zrank(waiting_key(job.request.base_model), job.id)
        rank = pipe.execute()[-1]
        self.tasks.send_task(GENERATE_TASK, args=[job.id], queue=queue_name(job.request.base_model))
        return queue_position(rank)

    def position(self, job: JobRecord) -> int:
        return queue_position(self.redis.zrank(waiting_key(job.request.base_model), job.id))

    def publish(self, job_id: str, type_: str, data: dict[str, Any]) -> str | None:
        """Append an event to the job's event stream (core/events.py)."""
        return publish(
            self.redis, job_id, type_, data, job_key=job_key(job_id), ttl_s=self.ttl_s, final=type_ in TERMINAL
        )

    def notify(self, job: JobRecord, event: str) -> None:
        """Queue a webhook delivery of `event` (a state, or "progress") if the job has a webhook that asked for it
        (`webhook_events`, default the final state only); progress at most once per 2 s per job."""
        if not job.request.webhook_url or webhook_kind(event) not in job.request.webhook_events:
            return
        throttle = f"dvd360:webhook-progress:{job.id}"
        if event == "progress" and not self.redis.set(throttle, 1, nx=True, px=PROGRESS_WEBHOOK_INTERVAL_MS):
            return
        # the message id (`webhook-id`) is made once per event, so every retry of it carries the same one
        self.tasks.send_task(WEBHOOK_TASK, args=[job.id, event, uuid.uuid4().hex], queue=WEBHOOK_QUEUE)

    def report_progress(self, job_id: str, step: int, total: int, eta_s: float | None) -> None:
        """Record a finished denoising step, publish it, and queue a progress webhook if asked for (throttled)."""
        progress = {"step": step, "total": total, "percent": round(100 * step / total, 1)}
        job = self.update(job_id, progress=progress)
        if job.state == "running":  # not after a cancel or the reaper ended it
            self.publish(job_id, "progress", {**progress, "eta_s": eta_s})
            self.notify(job, "progress")

    def get(self, job_id: str) -> JobRecord | None:
        raw = self.redis.get(job_key(job_id))
        return JobRecord.model_validate_json(raw) if raw else None

    def update(self, job_id: str, **fields: Any) -> JobRecord:
        """Merge fields into the record atomically (the API cancels while the worker reports progress)."""
        return self._merge(job_id, fields)[1]

    def _merge(self, job_id: str, fields: dict[str, Any]) -> tuple[JobState, JobRecord]:
        """The state the record had just before this write, and the record after it."""
        key = job_key(job_id)
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    if raw is None:
                        raise KeyError(job_id)
                    job = JobRecord.model_validate_json(raw)
                    previous = job.state
                    if job.finished and fields.get("state") not in (None, previous):
                        return previous, job  # a finished job stays finished (a late progress write, a redelivery)
                    finishing = fields.get("state") in TERMINAL and not job.finished
                    remaining_s = pipe.ttl(key) if finishing else -1
                    job = JobRecord.model_validate({**job.model_dump(), **fields})
                    pipe.multi()
                    pipe.set(key, job.model_dump_json(), keepttl=True)
                    if previous == "queued" and job.state != "queued":  # running, or finished: no longer waiting
                        pipe.zrem(waiting_key(job.request.base_model), job_id)
                    if finishing:
                        pipe.srem(active_key(job.owner), job_id)
                        pipe.hdel(UNFINISHED_KEY, job_id)
                        pipe.zrem(DEADLINES_KEY, job_id)
                        pipe.zadd(FINISHED_KEY, {f"{job_id}:{job.owner}": time.time()})
                        # the record lives as long as its files, and then some: retention leaves its tombstone
                        pipe.expire(key, max(remaining_s, self.result_ttl_s + RECORD_GRACE_S))
                    pipe.execute()
                    return previous, job
                except redis.WatchError:
                    continue

    def transition(self, job_id: str, state: JobState, **fields: Any) -> JobRecord:
        """Move a job to `state`; when it really changed, count a finished job, publish the event and queue its
        webhook (the API cancels queued jobs with this, the reaper ends abandoned ones, workers do the rest). A
        failed or canceled job always carries an `error_type`."""
        now = time.time()
        if state in TERMINAL:
            fields["finished_at"] = now
        if state == "failed":
            fields.setdefault("error_type", "internal")
        elif state == "canceled":
            fields.setdefault("error_type", "canceled")
        previous, job = self._merge(job_id, {"state": state, **fields})
        if previous != state and job.state == state:
            if job.finished:
                record_finished(self.redis, job.request.base_model, state, now - job.created_at)
            event = {"state": state, **{k: v for k, v in (("error", job.error), ("error_type", job.error_type)) if v}}
            self.publish(job_id, state, event)
            self.notify(job, state)
        return job

    def list(self, owner: str, offset: int, limit: int) -> tuple[list[JobRecord], int]:
        key = owner_key(owner)
        ids = self.redis.zrevrange(key, offset, offset + limit - 1)
        jobs = [j for j in (self.get(i.decode() if isinstance(i, bytes) else i) for i in ids) if j]
        return jobs, int(self.redis.zcard(key))

    def request_cancel(self, job_id: str) -> None:
        self.redis.set(f"dvd360:cancel:{job_id}", 1, ex=self.ttl_s)

    def cancel_requested(self, job_id: str) -> bool:
        return bool(self.redis.exists(f"dvd360:cancel:{job_id}"))
