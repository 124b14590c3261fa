"""Liveness of a worker, from the process that runs jobs: a thread rewrites a small JSON file every few seconds with
what that process is doing ("warming" while it loads models, "ready" once it can run a job). In a prefork worker
that is the pool child, not the parent: a killed child stops beating, so the probe fails until a replacement has
started (and is allowed its warm-up); a concurrency-1 worker busy with a job still beats (the probe cannot use
`celery inspect ping`)."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path


class Heartbeat:
    def __init__(self, path: Path, state: str, interval_s: float = 5.0) -> None:
        self.path, self.interval_s = path, interval_s
        self.state, self.since = state, time.time()
        self.beat()
        threading.Thread(target=self._run, name="dvd360-heartbeat", daemon=True).start()

    def set(self, state: str) -> None:
        self.state, self.since = state, time.time()
        self.beat()

    def beat(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        tmp.write_text(json.dumps({"state": self.state, "since": self.since, "pid": os.getpid()}))
        tmp.replace(self.path)  # atomic: the probe never reads half a file

    def _run(self) -> None:
        while True:
            time.sleep(self.interval_s)
            self.beat()


def heartbeat_problem(path: Path, max_age_s: float, warmup_budget_s: float) -> str | None:
    """Why the worker is not alive, or None: no beat, a stale beat, or warming up for longer than the budget."""
    try:
        age = time.time() - path.stat().st_mtime
        beat = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return f"worker heartbeat {path} is missing"
    if age > max_age_s:
        return f"worker heartbeat {path} is {age:.0f} s old (pid {beat.get('pid')} stopped beating)"
    if beat.get("state") == "warming" and time.time() - beat.get("since", 0) > warmup_budget_s:
        return f"worker has been loading models for over {warmup_budget_s:.0f} s"
    return None
