"""Liveness for busy workers: a thread touches a file; the probe checks its age (a concurrency-1 worker in the
middle of a job cannot answer `celery inspect ping`)."""

from __future__ import annotations

import threading
import time
from pathlib import Path


def start_heartbeat(path: Path, interval_s: float = 10.0) -> threading.Thread:
    def beat() -> None:
        while True:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
            time.sleep(interval_s)

    thread = threading.Thread(target=beat, name="dvd360-heartbeat", daemon=True)
    thread.start()
    return thread


def heartbeat_age(path: Path) -> float | None:
    """Seconds since the last beat, or None when there never was one."""
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None
