"""A crashed worker child comes back (issue 14, section 2): SIGKILL of the prefork pool child while its model takes
longer to load than Celery's default 4 s "UP" timeout (the tests' worker hook DVD360_TEST_WARMUP_DELAY_S,
tests/fault_worker.py, makes warm-up slow); the replacement warms up, is not killed in a loop, and runs the next
job. Liveness follows the child: its heartbeat says "warming" then "ready", and the probe fails while the child is
gone or warming past its budget."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.reliability.harness import ONE_STEP, Stack, write_figures
from worker.heartbeat import heartbeat_problem

pytestmark = pytest.mark.integration
WARMUP_DELAY_S, WARMUP_BUDGET_S = 6, 3


def _beat(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def _worker_alive(stack: Stack, heartbeat: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, **stack.env, "DVD360_HEARTBEAT_FILE": str(heartbeat), "PYTHONPATH": str(ROOT)}
    command = [str(Path(sys.executable).parent / "dvd360"), "worker-alive"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.timeout(400)  # two warm-ups: ~20 s alone, minutes on a shared 2-core machine under load
def test_a_killed_child_with_a_slow_model_comes_back_and_runs_the_next_job(tmp_path) -> None:
    heartbeat = tmp_path / "worker.heartbeat"
    stack = Stack(
        tmp_path,
        DVD360_TEST_WARMUP_DELAY_S=str(WARMUP_DELAY_S),
        DVD360_HEARTBEAT_FILE=str(heartbeat),
        DVD360_WORKER_WARMUP_BUDGET_S=str(WARMUP_BUDGET_S),
    )
    try:
        stack.start_worker(fault_hooks=True)
        deadline = time.monotonic() + 180
        while _beat(heartbeat).get("state") != "ready":
            assert time.monotonic() < deadline and stack.worker.poll() is None, stack.log()
            time.sleep(0.2)
        child = _beat(heartbeat)["pid"]
        assert child != stack.worker.pid  # the pool child beats, not the parent
        assert _worker_alive(stack, heartbeat).returncode == 0

        os.kill(child, signal.SIGKILL)
        problems = set()
        deadline = time.monotonic() + 180
        while (beat := _beat(heartbeat)).get("pid") == child or beat.get("state") != "ready":
            assert time.monotonic() < deadline, stack.log()
            if problem := heartbeat_problem(heartbeat, max_age_s=60, warmup_budget_s=WARMUP_BUDGET_S):
                problems.add(problem.split(" for ")[0])
            time.sleep(0.2)
        assert problems == {"worker has been loading models"}, problems  # the probe saw the child was not ready

        job_id = stack.submit(1, **ONE_STEP)[0]
        job = stack.wait_all([job_id], timeout_s=60)[job_id]
        assert job["state"] == "succeeded", (job, stack.log())
        check = _worker_alive(stack, heartbeat)
        assert check.returncode == 0, check.stderr
        log = (tmp_path / "worker.log").read_text()
        child_exits = log.count("exited with 'signal 9 (SIGKILL)'")
        assert child_exits == 1 and "Timed out waiting for UP message" not in log, log[-3000:]
        write_figures(
            "child_sigkill_slow_model",
            {"jobs": 1, "faults_injected": 1, "succeeded": 1, "child_restarts": child_exits, "stuck": 0, "lost": 0,
             "warmup_delay_s": WARMUP_DELAY_S},
        )  # fmt: skip
    finally:
        stack.close()
