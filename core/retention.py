"""Retention: a finished job's outputs are deleted DVD360_RESULT_TTL_S after it finished, an upload
DVD360_UPLOAD_TTL_S after it was stored. Indexes (sorted sets scored by time) say what is due, so a sweep costs
what expired, not what is stored. An expired job leaves a small tombstone for longer, so its owner gets 410 with a
reason instead of 404 (a finished record is kept at least until then: core/jobs.py). S3 deployments add bucket
lifecycle rules as a backstop (docker-compose.yml, k8s)."""

from __future__ import annotations

import json
import logging
import time

import redis

from core.events import stream_key
from core.job_metrics import record_expired
from core.jobs import FINISHED_KEY, job_key, owner_key

log = logging.getLogger(__name__)
UPLOADS_KEY = "dvd360:uploads"
TOMBSTONE_TTL_S = 30 * 24 * 3600
BATCH = 200  # entries per sweep pass: a backlog drains over a few passes instead of one long one


def tombstone_key(job_id: str) -> str:
    return f"dvd360:gone:{job_id}"


def index_upload(client: redis.Redis, flow_id: str, key: str) -> None:
    """Schedule a stored upload for deletion (called when it is stored)."""
    client.zadd(UPLOADS_KEY, {f"{flow_id}:{key}": time.time()})


def tombstone(client: redis.Redis, job_id: str, owner: str) -> dict | None:
    """What is left of an expired job, for its owner only (another key still gets 404)."""
    raw = client.get(tombstone_key(job_id))
    gone = json.loads(raw) if raw else None
    return gone if gone and gone["owner"] == owner else None


def sweep(client: redis.Redis, storage, result_ttl_s: int, upload_ttl_s: int, now: float | None = None) -> dict:
    """Delete what expired; returns counts. A storage failure leaves the entry for the next pass."""
    now = time.time() if now is None else now
    counts = {"jobs_expired": 0, "uploads_expired": 0}
    for member in client.zrangebyscore(FINISHED_KEY, 0, now - result_ttl_s, start=0, num=BATCH):
        job_id, owner = member.decode().split(":", 1)
        try:
            storage.delete_prefix(f"outputs/{job_id}/")
        except Exception as exc:  # S3 away: try again next pass
            log.warning("retention: outputs of job %s not deleted yet: %s", job_id, exc)
            continue
        gone = {"owner": owner, "expired_at": now, "reason": f"finished jobs are kept {result_ttl_s} s"}
        pipe = client.pipeline()
        pipe.set(tombstone_key(job_id), json.dumps(gone), ex=TOMBSTONE_TTL_S)
        pipe.delete(job_key(job_id), stream_key(job_id))  # the record, and its events with their last preview
        pipe.zrem(owner_key(owner), job_id)
        pipe.zrem(FINISHED_KEY, member)
        pipe.execute()
        record_expired(client, "job")
        counts["jobs_expired"] += 1
    for member in client.zrangebyscore(UPLOADS_KEY, 0, now - upload_ttl_s, start=0, num=BATCH):
        _, key = member.decode().split(":", 1)
        try:
            storage.delete(key)
        except Exception as exc:
            log.warning("retention: upload %s not deleted yet: %s", key, exc)
            continue
        client.zrem(UPLOADS_KEY, member)  # its record expires on its own (stored with the same TTL)
        record_expired(client, "upload")
        counts["uploads_expired"] += 1
    return counts
