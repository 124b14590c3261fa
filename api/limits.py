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
RATE_WHAT = {
    "write": "submissions for this API key",
    "read": "reads for this API key",
    "auth_failure": "failed authentications from this address",
}


class KeyLimits:
    """Writes (submitting, canceling) and reads (polling one's own jobs, event streams) have separate rates, so a page
    that watches a job never locks its owner out of submitting; failed authentication is limited per client address."""

    def __init__(self, client: redis.Redis, redis_url: str, rates: dict[str, str], max_active_jobs: int) -> None:
        self.client, self.max_active_jobs = client, max_active_jobs
        self.rates = {kind: parse(rate) for kind, rate in rates.items()}
        self.limiter = MovingWindowRateLimiter(RedisStorage(redis_url, socket_timeout=5))

    def check_rate(self, kind: str, who: str) -> None:
        """429 with Retry-After when `who` (an API key's owner, or a client address for auth failures) is over the
        `kind` rate: write, read or auth_failure."""
        rate = self.rates[kind]
        if not self.limiter.hit(rate, "dvd360", kind, who):
            reset_at = self.limiter.get_window_stats(rate, "dvd360", kind, who).reset_time
            wait = max(1, math.ceil(reset_at - time.time()))
            raise HTTPException(
                429, f"more than {rate} {RATE_WHAT[kind]}; retry in {wait} s", {"Retry-After": str(wait)}
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

    def release_job(self, owner: str, job_id: str) -> None:
        """Give back a slot reserved for a request that was refused after all."""
        self.client.srem(active_key(owner), job_id)
