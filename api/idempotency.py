"""Idempotency-Key for POST /generate: a retried request (same key, same body) gets the job the first one made;
the same key with a different body is refused. Keys are per API key and expire after a day by default."""

from __future__ import annotations

import hashlib
import json
import time

import redis
from fastapi import HTTPException

MAX_KEY_CHARS = 200


class IdempotencyKeys:
    def __init__(self, client: redis.Redis, ttl_s: int) -> None:
        self.client, self.ttl_s = client, ttl_s

    @staticmethod
    def _redis_key(owner: str, key: str) -> str:
        return f"dvd360:idem:{owner}:{hashlib.sha256(key.encode()).hexdigest()}"

    def claim(self, owner: str, key: str, body_digest: str, job_id: str) -> str | None:
        """Bind `key` to `job_id` and return None, or return the job an earlier identical request made."""
        if not 1 <= len(key) <= MAX_KEY_CHARS or not key.isprintable():
            raise HTTPException(422, f"Idempotency-Key must be 1-{MAX_KEY_CHARS} printable characters")
        redis_key = self._redis_key(owner, key)
        claim = json.dumps({"job": job_id, "body": body_digest})
        if self.client.set(redis_key, claim, nx=True, ex=self.ttl_s):
            return None
        earlier = json.loads(self.client.get(redis_key) or claim)
        if earlier["body"] != body_digest:
            raise HTTPException(
                422, "this Idempotency-Key was used with a different request; send a new key for a new request"
            )
        return earlier["job"]

    def release(self, owner: str, key: str) -> None:
        """Forget a claim whose job was refused (a limit), so the client's retry can make it."""
        self.client.delete(self._redis_key(owner, key))


def wait_for_record(get, job_id: str, timeout_s: float = 2.0) -> dict:
    """The job a concurrent identical request is creating right now (claimed, record not yet written)."""
    deadline = time.monotonic() + timeout_s
    while (job := get(job_id)) is None:
        if time.monotonic() > deadline:
            raise HTTPException(409, "an identical request is still being accepted; retry in a second")
        time.sleep(0.05)
    return job


def body_digest(request: dict, upload_sha256: str | None = None) -> str:
    canonical = json.dumps(request, sort_keys=True) + (upload_sha256 or "")
    return hashlib.sha256(canonical.encode()).hexdigest()
