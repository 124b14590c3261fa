"""A running job's lease: a Redis key with a TTL that only the worker running the job refreshes (from the progress
callback and from a small thread, so one long step does not let it lapse). The reaper treats a `running` job whose
lease is gone as abandoned (its worker died or hung). Taking the lease is exclusive: a second delivery of a job
that is being run elsewhere finds it held and leaves the job alone."""

from __future__ import annotations

import contextlib
import threading
import uuid

import redis

# Refresh when the key still holds our token; take it again if it lapsed while nobody else took it (Redis was
# briefly away); 0 when another delivery holds it now.
_REFRESH = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if not holder then return redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) and 1 end
return 0
"""
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


def lease_key(job_id: str) -> str:
    return f"dvd360:lease:{job_id}"


class LeaseLost(Exception):
    """Another delivery of this job holds its lease now (this worker's was reaped): stop without writing."""


class JobLease:
    def __init__(self, client: redis.Redis, job_id: str, ttl_s: float) -> None:
        self.client, self.key, self.ttl_ms = client, lease_key(job_id), max(1, int(ttl_s * 1000))
        self.token = uuid.uuid4().hex
        self.lost = False
        self._stop = threading.Event()
        self._refresh = client.register_script(_REFRESH)

    def acquire(self) -> bool:
        """Take the lease if nobody holds it; then keep it fresh from a thread until `release`."""
        if not self.client.set(self.key, self.token, px=self.ttl_ms, nx=True):
            return False
        threading.Thread(target=self._keep, name="dvd360-lease", daemon=True).start()
        return True

    def refresh(self) -> None:
        """Extend the lease (every progress step); raises LeaseLost when another delivery took the job."""
        try:
            if not self._refresh(keys=[self.key], args=[self.token, self.ttl_ms]):
                self.lost = True
        except redis.RedisError:
            return  # Redis away: the job goes on; the lease is taken again when it is back, or the job is reaped
        if self.lost:
            raise LeaseLost(self.key)

    def _keep(self) -> None:
        while not self._stop.wait(self.ttl_ms / 3000):
            try:
                self.refresh()
            except LeaseLost:
                return

    def release(self) -> None:
        self._stop.set()
        with contextlib.suppress(redis.RedisError):  # Redis away: it lapses on its own
            self.client.eval(_RELEASE, 1, self.key, self.token)
