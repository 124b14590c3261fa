"""Deadlines (`Cancel-After` header or `"deadline_s"`): a job not finished `deadline_s` after it was created is
canceled with error_type `deadline`.

Two guards: every deadline is kept in a Redis sorted set (DEADLINES_KEY, scored by when it falls, written with the
record), which the reaper reads twice a second and removes each entry it acts on, so every deadline fires once: a
queued job is canceled right then (it never starts, and its events and webhook go out on time), a running one is
asked to stop. The generation task itself checks the clock at start and before every step, so a deadline holds even
when the reaper is late.

Why not a Celery countdown task per deadline: on a Redis broker an unacknowledged message is handed out again
after the visibility timeout, so a timer hours long is delivered again and again.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import redis

if TYPE_CHECKING:
    from core.records import JobRecord

DEADLINES_KEY = "dvd360:deadlines"


def deadline_at(job: JobRecord) -> float | None:
    """When the job's deadline falls (UNIX seconds), or None without one."""
    deadline_s = job.request.deadline_s
    return None if deadline_s is None else job.created_at + deadline_s


def deadline_passed(job: JobRecord, now: float | None = None) -> bool:
    at = deadline_at(job)
    return at is not None and (time.time() if now is None else now) >= at


def cancel_fields(job: JobRecord, now: float | None = None) -> dict[str, Any]:
    """How a canceled job reads: a deadline when it passed, else a plain cancel (the store's default)."""
    if not deadline_passed(job, now):
        return {}
    return {
        "error_type": "deadline",
        "error": f"the job did not finish within its deadline of {job.request.deadline_s:g} s",
    }


def take_due(client: redis.Redis, now: float) -> list[str]:
    """The ids of jobs whose deadline has come, each handed to exactly one caller (whoever removes it)."""
    due = [m.decode() for m in client.zrangebyscore(DEADLINES_KEY, 0, now, start=0, num=500)]
    return [job_id for job_id in due if client.zrem(DEADLINES_KEY, job_id)]
