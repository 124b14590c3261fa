"""Job stores and records as the service makes them, for tests that write a job's changes themselves."""

from __future__ import annotations

import uuid

import redis
from celery import Celery

from core.jobs import JobStore
from core.records import JobRecord
from core.request import GenerationRequest
from models.registry import tiny_spec


class LostMessages:
    """A task sender whose messages never reach the broker (what a failed send_task leaves behind)."""

    def send_task(self, *args, **kwargs) -> None:
        pass


def job_store(redis_url: str, ttl_s: int = 3600, tasks=None) -> JobStore:
    """A JobStore as the API builds one: its task messages go to the broker on the same Redis, by task name."""
    sender = Celery("dvd360", broker=redis_url) if tasks is None else tasks
    return JobStore(redis.Redis.from_url(redis_url), sender, ttl_s, ttl_s)


def stored_job(store: JobStore, owner: str = "anonymous", **fields) -> JobRecord:
    """A queued tiny-model job, its request resolved as the API resolves it (its message is sent as well)."""
    request = GenerationRequest.model_validate({"prompt": "x", **fields}).resolve(tiny_spec())
    return store.create(owner, request, uuid.uuid4().hex)
