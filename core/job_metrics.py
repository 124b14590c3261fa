"""Job metrics shared through Redis: workers count finished jobs and their durations there, and the API's
/metrics exposes them (workers are many processes; Prometheus scrapes the API). No prometheus_client here."""

from __future__ import annotations

import redis

DURATION_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800)
JOBS_KEY, DURATIONS_KEY = "dvd360:metrics:jobs", "dvd360:metrics:durations"
REAPED_KEY, EXPIRED_KEY = "dvd360:metrics:reaped", "dvd360:metrics:expired"


def record_finished(client: redis.Redis, base_model: str, state: str, seconds: float | None) -> None:
    pipe = client.pipeline()
    pipe.hincrby(JOBS_KEY, f"{base_model}|{state}", 1)
    if seconds is not None and state == "succeeded":
        for bound in (*DURATION_BUCKETS, "+Inf"):
            if bound == "+Inf" or seconds <= bound:
                pipe.hincrby(DURATIONS_KEY, f"{base_model}|{bound}", 1)
        pipe.hincrbyfloat(DURATIONS_KEY, f"{base_model}|sum", seconds)
    pipe.execute()


def record_reaped(client: redis.Redis, reason: str, action: str) -> None:
    """The reaper ended or requeued an abandoned job (reason: lease_expired | lost_message; action: requeued | ...)."""
    client.hincrby(REAPED_KEY, f"{reason}|{action}", 1)


def record_expired(client: redis.Redis, kind: str) -> None:
    """Retention deleted an expired job's outputs or an expired upload (kind: job | upload)."""
    client.hincrby(EXPIRED_KEY, kind, 1)
