"""Backends going away under load: a Redis restart (append-only persistence) loses no accepted job and the API
answers 503 with Retry-After meanwhile; an S3 outage during upload is retried with backoff, then the job fails
with a clear reason, and the next job succeeds once S3 is back."""

from __future__ import annotations

import time

import pytest

from tests.processes import S3Server
from tests.reliability.harness import ONE_STEP, Stack, write_figures

pytestmark = pytest.mark.integration


@pytest.mark.timeout(600)  # worker warm-up takes a minute on a loaded shared machine, each job up to 35 s
def test_redis_restart_loses_no_accepted_job(tmp_path) -> None:
    stack = Stack(tmp_path)
    try:
        ids = stack.submit(6, **ONE_STEP)
        stack.start_worker()
        deadline = time.monotonic() + 120
        while not any(j["state"] == "succeeded" for j in stack.states(ids).values()):
            assert time.monotonic() < deadline, stack.log()
            time.sleep(0.1)
        at_stop = [j["state"] for j in stack.states(ids).values()]
        stack.stop_redis()
        during = [stack.api.get("/jobs"), stack.api.post("/generate", json={"prompt": "x"}), stack.api.get("/readyz")]
        assert [a.status_code for a in during] == [503, 503, 503]
        assert all(a.headers["retry-after"] == "5" for a in during)
        time.sleep(2)
        stack.start_redis()
        ids += stack.submit(2, **ONE_STEP)  # accepted again right after the restart
        jobs = stack.wait_all(ids, timeout_s=300)
        states = [j["state"] for j in jobs.values()]
        write_figures(
            "redis_restart",
            {"jobs": len(ids), "faults_injected": 1, "lost": sum(s != "succeeded" for s in states),
             "unfinished_at_stop": sum(s != "succeeded" for s in at_stop), "running_at_stop": at_stop.count("running"),
             "answers_while_down": [a.status_code for a in during]},
        )  # fmt: skip
        assert states == ["succeeded"] * len(ids), (jobs, stack.log())
    finally:
        stack.close()


@pytest.mark.timeout(400)  # worker warm-up takes a minute on a loaded shared machine
def test_s3_outage_fails_the_job_clearly_after_retries_then_recovers(tmp_path) -> None:
    s3 = S3Server(tmp_path / "s3")
    s3.start()
    stack = Stack(tmp_path / "stack", **s3.settings_env(), DVD360_STORAGE_RETRIES="2")
    try:
        stack.start_worker()
        first = stack.submit(1)
        assert stack.wait_all(first, timeout_s=90)[first[0]]["state"] == "succeeded", stack.log()
        s3.stop()
        assert stack.api.get("/readyz").status_code == 503
        started = time.monotonic()
        down = stack.submit(1)
        failed = stack.wait_all(down, timeout_s=90)[down[0]]
        waited = time.monotonic() - started
        assert failed["state"] == "failed" and "could not be stored" in failed["error"], (failed, stack.log())
        assert failed["error_type"] == "storage"
        assert waited >= 3  # backoff of 1 + 2 s between the three attempts
        s3.start()
        after = stack.submit(1)
        recovered = stack.wait_all(after, timeout_s=90)[after[0]]
        write_figures(
            "s3_outage",
            {"jobs": 3, "faults_injected": 1, "failed_clearly": failed["state"] == "failed",
             "seconds_until_failed": round(waited, 1), "recovered": recovered["state"] == "succeeded",
             "succeeded": 1 + (recovered["state"] == "succeeded"), "stuck": 0, "lost": 0,
             "failed_with_right_error_type": int(failed["error_type"] == "storage")},
        )  # fmt: skip
        assert recovered["state"] == "succeeded", stack.log()
    finally:
        stack.close()
        s3.stop()
