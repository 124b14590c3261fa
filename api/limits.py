"""Per-key limits: a request rate (moving window, the `limits` library on the shared Redis) and a cap on jobs
queued or running at once. Both answer 429 with Retry-After."""

from __future__ import annotations

import math
import time
import uuid

import redis
from fastapi import HTTPException
from limits import parse
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from core.jobs import active_key

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


# Take a slot if fewer than ARGV[3] live ones: lapsed slots (score = when they lapse) are dropped first.
_TAKE_SLOT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('PEXPIREAT', KEYS[1], math.floor(ARGV[2] * 1000))
return 1
"""


class StreamSlots:
    """How many event streams and Prefer: wait requests each API key holds open, across API replicas: a sorted set per
    key of slot ids scored by when each lapses. A holder renews its slot while it is open, so the slots of a replica
    that crashed lapse on their own."""

    LEASE_S = 60

    def __init__(self, limit: int) -> None:
        self.limit = limit

    @staticmethod
    def _key(owner: str) -> str:
        return f"dvd360:streams:{owner}"

    async def take(self, client, owner: str) -> str:
        """A slot id, or 429 when the key already holds `limit` open streams and waits."""
        slot, now = uuid.uuid4().hex, time.time()
        if not await client.eval(_TAKE_SLOT, 1, self._key(owner), now, now + self.LEASE_S, self.limit, slot):
            raise HTTPException(
                429,
                f"this API key already has {self.limit} event streams or waits open; close one first",
                {"Retry-After": str(ACTIVE_RETRY_AFTER_S)},
            )
        return slot

    async def renew(self, client, owner: str, slot: str) -> None:
        await client.zadd(self._key(owner), {slot: time.time() + self.LEASE_S}, xx=True)

    async def give_back(self, client, owner: str, slot: str) -> None:
        await client.zrem(self._key(owner), slot)
