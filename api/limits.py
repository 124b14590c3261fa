"""Per-key limits: a request rate (moving window, the `limits` library on the shared Redis) and a cap on jobs
queued or running at once. Both answer 429 with Retry-After."""

from __future__ import annotations

import math
import time

import redis
from fastapi import HTTPException
from limits import parse
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from worker.jobs import active_key

ACTIVE_RETRY_AFTER_S = 10


class KeyLimits:
    def __init__(self, client: redis.Redis, redis_url: str, rate: str, max_active_jobs: int) -> None:
        self.client, self.max_active_jobs = client, max_active_jobs
        self.rate = parse(rate)
        self.limiter = MovingWindowRateLimiter(RedisStorage(redis_url, socket_timeout=5))

    def check_rate(self, owner: str) -> None:
        if not self.limiter.hit(self.rate, "dvd360", owner):
            reset_at = self.limiter.get_window_stats(self.rate, "dvd360", owner).reset_time
            wait = max(1, math.ceil(reset_at - time.time()))
            raise HTTPException(
                429, f"more than {self.rate} requests for this API key; retry in {wait} s", {"Retry-After": str(wait)}
            )

    def reserve_job(self, owner: str, job_id: str) -> None:
        """Count the job against the key's cap, or refuse it (add first, then check: no race between two)."""
        key = active_key(owner)
        pipe = self.client.pipeline()
        pipe.sadd(key, job_id)
        pipe.scard(key)
        _, active = pipe.execute()
        if active > self.max_active_jobs:
            self.client.srem(key, job_id)
            raise HTTPException(
                429,
                f"this API key already has {self.max_active_jobs} jobs queued or running; wait for one to finish "
                "or cancel one",
                {"Retry-After": str(ACTIVE_RETRY_AFTER_S)},
            )
