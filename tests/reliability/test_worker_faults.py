"""Workers killed with SIGKILL mid-job: every accepted job still ends succeeded, once, with one set of outputs;
a job that kills its worker every time fails after the redelivery cap while the queue keeps going."""

from __future__ import annotations

import random
import time

import pytest

from tests.reliability.harness import ONE_STEP, Stack, write_figures

pytestmark = pytest.mark.integration
OUTPUTS = ["poster.jpg", "video.mp4", "views.jpg"]


@pytest.fixture
def stack(tmp_path):
    stack = Stack(tmp_path)
    yield stack
    stack.close()


def _running(stack: Stack, ids: list[str]) -> str | None:
    return next((i for i, job in stack.states(ids).items() if job["state"] == "running"), None)


@pytest.mark.timeout(600)  # four worker starts: a minute each on a loaded shared machine
def test_jobs_survive_workers_killed_mid_job(stack) -> None:
    rng = random.Random(7)
    ids = stack.submit(20, **ONE_STEP)
    stack.start_worker()
    killed: list[str] = []
    for _ in range(3):  # kill while a job runs, at a random moment of it, never the same job twice
        deadline = time.monotonic() + 40
        while (victim := _running(stack, ids)) in (None, *killed):
            assert time.monotonic() < deadline, stack.log()
            time.sleep(0.05)
        time.sleep(rng.uniform(0, 0.3))
        stack.kill_worker()
        killed.append(victim)
        stack.start_worker()
    jobs = stack.wait_all(ids, timeout_s=300)  # a few seconds per job on a loaded 2-core machine
    states = [job["state"] for job in jobs.values()]
    lost = sum(s == "failed" for s in states)
    stuck = sum(s in ("queued", "running") for s in states)
    outputs = {i: stack.output_files(i) for i in ids}
    duplicated = sum(len(o) > len(OUTPUTS) for o in outputs.values())
    redelivered = sum(job["deliveries"] > 1 for job in jobs.values())
    write_figures(
        "worker_kills",
        {"jobs": len(ids), "faults_injected": len(killed), "redelivered": redelivered, "lost": lost,
         "duplicated": duplicated, "stuck": stuck},
    )  # fmt: skip
    assert states == ["succeeded"] * len(ids), (jobs, stack.log())
    assert all(o == OUTPUTS for o in outputs.values()), outputs  # one set each, no partial files left
    assert redelivered >= 1  # at least one kill hit a job mid-run (the others may have hit the gap after it)


@pytest.mark.timeout(600)
def test_a_job_that_kills_its_worker_every_time_fails_after_the_cap(stack) -> None:
    poison, *others = stack.submit(3)
    stack.start_worker(wait=False)  # the loop below must see each delivery start
    kills = 0
    deadline = time.monotonic() + 400
    while (job := stack.states([poison])[poison])["state"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, stack.log()
        if job["state"] == "running" and job["deliveries"] > kills:  # a new delivery started: crash it
            stack.kill_worker()
            kills += 1
            stack.start_worker(wait=False)
        time.sleep(0.02)
    jobs = stack.wait_all(others, timeout_s=120)
    poisoned = stack.states([poison])[poison]
    write_figures("poison_job", {"jobs": 3, "faults_injected": kills, "poison_state": poisoned["state"]})
    assert poisoned["state"] == "failed" and "repeatedly" in poisoned["error"] and kills == 3
    assert [job["state"] for job in jobs.values()] == ["succeeded", "succeeded"]  # the queue kept going
