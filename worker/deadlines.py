"""Deadlines (`Cancel-After` header or `"deadline_s"`): a job not finished `deadline_s` after it was created is
canceled with error_type `deadline`.

Two guards: a timer task, queued by the API with the job and run by the side worker (`dvd360 worker --webhooks`, the
CPU worker every deployment has) when the deadline comes, cancels a queued job right then (it never starts, and its
events and webhook go out on time) and asks a running one to stop; the generation task itself checks the clock at
start and before every step, so a deadline holds even when the timer is late.
"""

from __future__ import annotations

import time
from typing import Any

from celery import shared_task

from worker.jobs import TERMINAL, WEBHOOK_QUEUE

DEADLINE_TASK = "dvd360.deadline"
MAX_DEADLINE_S = 24 * 3600


def deadline_passed(job: dict[str, Any]) -> bool:
    deadline_s = job["request"].get("deadline_s")
    return deadline_s is not None and time.time() >= job["created_at"] + deadline_s


def cancel_fields(job: dict[str, Any]) -> dict[str, Any]:
    """How a canceled job reads: a deadline when it passed, else a plain cancel (the store's default)."""
    if not deadline_passed(job):
        return {}
    return {
        "error_type": "deadline",
        "error": f"the job did not finish within its deadline of {job['request']['deadline_s']:g} s",
    }


def schedule_deadline(celery, job: dict[str, Any]) -> None:
    """Queue the timer for a job that has a deadline (from the API, right after the job itself)."""
    if (deadline_s := job["request"].get("deadline_s")) is not None:
        celery.send_task(DEADLINE_TASK, args=[job["id"]], queue=WEBHOOK_QUEUE, countdown=deadline_s)


@shared_task(name=DEADLINE_TASK, bind=True)
def enforce_deadline(self, job_id: str) -> None:
    from worker.webhooks import _store  # the side worker's one Redis pool

    store = _store()
    job = store.get(job_id)
    if job is None or job["state"] in TERMINAL or not deadline_passed(job):
        return
    store.request_cancel(job_id)  # a running job stops at its next step; the worker names it a deadline
    if job["state"] == "queued":
        store.transition(self.app, job_id, "canceled", **cancel_fields(job))
