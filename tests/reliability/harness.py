"""A small production-like stack for fault tests: Redis with append-only persistence on a fixed port (so it can
be restarted), the API in process, the reaper, and Celery worker processes that the tests kill with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import redis
from fastapi.testclient import TestClient

from api.app import create_app
from cli.redis_server import start_redis_server
from core.settings import Settings
from tests.conftest import ROOT, free_port
from tests.processes import start_reaper, start_worker, track

SMALL = {"num_frames": 8, "height": 64, "width": 128, "steps": 2}
ONE_STEP = {"num_frames": 1, "height": 64, "width": 128, "steps": 1, "guidance_scale": 1}  # cheap on a busy CPU
TERMINAL = {"succeeded", "failed", "canceled"}
FIGURES = ROOT / "test-artifacts" / "reliability"


class Stack:
    def __init__(self, folder: Path, **env: str) -> None:
        self.folder, self.redis_port = folder, free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.env = {
            "DVD360_REDIS_URL": self.redis_url,
            "DVD360_DATA_DIR": str(folder),
            "DVD360_SIGNING_KEY": "fault-tests",
            # a dead worker's job comes back ~6 s after it was taken (production: 40 min, above the longest job)
            "DVD360_VISIBILITY_TIMEOUT_S": "5",
            "DVD360_RESTORE_INTERVAL_S": "1",
            # a dead worker's lease lapses in 5 s and the reaper looks twice a second (production: 60 s, 15 s)
            "DVD360_JOB_LEASE_S": "5",
            "DVD360_REAPER_INTERVAL_S": "0.5",
            "DVD360_HEARTBEAT_FILE": str(folder / "worker.heartbeat"),
            **env,
        }
        self.redis: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self.start_redis()
        self.reaper = start_reaper(self.env, folder / "reaper.log")
        settings = Settings(
            **{k[7:].lower(): v for k, v in self.env.items()}, auth=False, rate_limit="100/second", max_active_jobs=1000
        )
        self.api = TestClient(create_app(settings))
        self.db = redis.Redis.from_url(self.redis_url)

    def start_redis(self) -> None:
        (self.folder / "redis").mkdir(parents=True, exist_ok=True)
        self.redis = track(start_redis_server(self.redis_port, self.folder / "redis", start_new_session=True))

    def stop_redis(self) -> None:
        self.redis.terminate()  # SIGTERM: Redis flushes its append-only file before exiting
        self.redis.wait(timeout=10)

    def start_worker(self, wait: bool = True, fault_hooks: bool = False) -> None:
        """Start a worker (with the tests' fault hooks: tests/fault_worker.py); with `wait`, return once its pool
        child has loaded the model (its heartbeat says ready), so the tests' deadlines time jobs, not a warm-up that
        a loaded machine stretches to a minute."""
        previous = self.heartbeat().get("pid")
        self.worker = start_worker(self.env, self.folder / "worker.log", fault_hooks=fault_hooks)
        deadline = time.monotonic() + 240
        while wait and ((beat := self.heartbeat()).get("pid") == previous or beat.get("state") != "ready"):
            assert time.monotonic() < deadline and self.worker.poll() is None, self.log()
            time.sleep(0.2)

    def heartbeat(self) -> dict:
        try:
            return json.loads(Path(self.env["DVD360_HEARTBEAT_FILE"]).read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def kill_worker(self) -> None:
        os.killpg(self.worker.pid, signal.SIGKILL)  # the parent and its pool child, with no warning
        self.worker.wait()

    def submit(self, count: int, **fields) -> list[str]:
        ids = []
        for i in range(count):
            answer = self.api.post("/generate", json={"prompt": f"job {i}", "seed": i, **SMALL, **fields})
            assert answer.status_code == 202, answer.text
            ids.append(answer.json()["id"])
        return ids

    def states(self, ids: list[str]) -> dict[str, dict]:
        return {i: json.loads(self.db.get(f"dvd360:job:{i}")) for i in ids}

    def wait_all(self, ids: list[str], timeout_s: float) -> dict[str, dict]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            jobs = self.states(ids)
            if all(j["state"] in TERMINAL for j in jobs.values()):
                return jobs
            time.sleep(0.2)
        return self.states(ids)

    def output_files(self, job_id: str) -> list[str]:
        folder = self.folder / "storage" / "outputs" / job_id
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []

    def close(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.kill_worker()
        self.reaper.terminate()
        self.reaper.wait(timeout=10)
        if self.redis.poll() is None:
            self.stop_redis()

    def log(self) -> str:
        path = self.folder / "worker.log"
        return path.read_text()[-4000:] if path.exists() else ""


def write_figures(name: str, figures: dict) -> None:
    """Figures for benchmarks/reliability_figures.py, which runs these tests and prints them together."""
    FIGURES.mkdir(parents=True, exist_ok=True)
    (FIGURES / f"{name}.json").write_text(json.dumps(figures, indent=1))
