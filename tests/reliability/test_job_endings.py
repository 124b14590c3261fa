"""Every job ends (issue 14, section 1), with real processes: a Celery worker, the reaper, Redis, a tmpfs as the
worker's temp disk. Each fault class ends its job in a final state with the right error_type and a message safe to
show, and nothing stays queued or running.

Injected for real: a soft time limit (Celery's own signal), a deleted upload (the file removed from storage), a full
temp disk (a filled tmpfs; skipped where mounting is not allowed), a lost broker message (a record with no message,
what a failed send_task leaves), a lapsed lease (a running record nobody holds). Injected through the tests' worker
hooks (tests/fault_worker.py): exceptions a CPU machine cannot provoke (CUDA out of memory, an S3 error response, an
ffmpeg failure, an unforeseen bug)."""

from __future__ import annotations

import io
import os
import subprocess
import time
import uuid

import numpy as np
import pytest
from celery import Celery

from core.jobs import MAX_DELIVERIES, active_key
from core.request import GenerationRequest
from tests.fault_worker import FAULTS
from tests.reliability.harness import ONE_STEP, Stack, write_figures
from tests.stores import LostMessages, job_store

pytestmark = pytest.mark.integration
EXPECTED = {
    "torch.OutOfMemoryError": "out_of_memory",
    "RuntimeError-oom": "out_of_memory",
    "MemoryError": "out_of_memory",
    "ClientError": "storage",
    "FFmpegError": "internal",
    "KeyError": "internal",
}
TIME_LIMIT_S = 120


@pytest.fixture(scope="module")
def tmpfs(tmp_path_factory):
    """A 8 MB tmpfs for the worker's temp files (the full-disk test fills it), or None where mounting fails."""
    folder = tmp_path_factory.mktemp("tmpfs")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(folder)], capture_output=True)
    yield folder if mounted.returncode == 0 else None
    if mounted.returncode == 0:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, tmpfs):
    env = {
        "DVD360_QUEUED_GRACE_S": "1",
        "DVD360_TASK_SOFT_TIME_LIMIT_S": str(TIME_LIMIT_S),
    }
    if tmpfs is not None:
        env["TMPDIR"] = str(tmpfs)
    stack = Stack(tmp_path_factory.mktemp("stack"), **env)
    stack.start_worker(fault_hooks=True)
    yield stack
    stack.close()


@pytest.fixture(scope="module")
def template(stack) -> GenerationRequest:
    """A full job request as the API resolves it (defaults filled in), from one submitted job's record."""
    job_id = stack.submit(1, **ONE_STEP)[0]
    return GenerationRequest.model_validate({**stack.states([job_id])[job_id]["request"], "prompt": "direct"})


def _record(stack: Stack, request: GenerationRequest) -> str:
    """A job record as the API writes it, whose queue message never reached the broker."""
    return job_store(stack.redis_url, tasks=LostMessages()).create("anonymous", request, uuid.uuid4().hex).id


def _enqueue(stack: Stack, request: GenerationRequest, **options) -> str:
    """A job as the API writes it, sent with Celery options the API never uses (a per-job soft time limit)."""
    job_id = _record(stack, request)
    Celery("dvd360", broker=stack.redis_url).send_task("dvd360.generate", args=[job_id], queue="gen.tiny", **options)
    return job_id


def _assert_safe(message: str) -> None:
    assert message and "Traceback" not in message and "secret" not in message and "token=" not in message


def test_every_exception_type_ends_its_job_with_a_stable_error_type(stack) -> None:
    ids = {name: stack.submit(1, prompt=f"raise:{name}", **ONE_STEP)[0] for name in FAULTS}
    jobs = stack.wait_all(list(ids.values()), timeout_s=120)
    got = {name: (jobs[i]["state"], jobs[i]["error_type"]) for name, i in ids.items()}
    assert got == {name: ("failed", kind) for name, kind in EXPECTED.items()}, (got, stack.log())
    for job in jobs.values():
        _assert_safe(job["error"])
    assert stack.db.scard(active_key("anonymous")) == 0  # every slot given back
    write_figures(
        "exception_types",
        {"jobs": len(ids), "faults_injected": len(ids), "succeeded": 0,
         "failed_with_right_error_type": sum(v == ("failed", EXPECTED[k]) for k, v in got.items()),
         "stuck": sum(j["state"] in ("queued", "running") for j in jobs.values()), "lost": 0},
    )  # fmt: skip


def test_a_job_past_the_soft_time_limit_fails_as_timeout(stack, template) -> None:
    request = template.model_copy(update={"num_frames": 32, "height": 128, "width": 256, "steps": 200})
    job_id = _enqueue(stack, request, soft_time_limit=1)
    job = stack.wait_all([job_id], timeout_s=90)[job_id]
    assert (job["state"], job["error_type"]) == ("failed", "timeout"), (job, stack.log())
    assert "time limit" in job["error"]
    write_figures("soft_time_limit", _figures([job], "timeout"))


def test_a_deleted_upload_fails_as_input(stack) -> None:
    flow = io.BytesIO()
    np.save(flow, np.full((8, 32, 64, 2), 1.5, np.float32))
    uploaded = stack.api.post("/flows", files={"file": ("m.npy", flow.getvalue())}, data={"kind": "raw_flow"})
    assert uploaded.status_code == 201, uploaded.text
    stored = stack.folder / "storage" / "uploads" / f"{uploaded.json()['id']}.npy"
    stored.unlink()  # gone from storage (an operator, a lifecycle rule) after it was accepted
    job_id = stack.submit(1, flow_id=uploaded.json()["id"], **ONE_STEP)[0]
    job = stack.wait_all([job_id], timeout_s=60)[job_id]
    assert (job["state"], job["error_type"]) == ("failed", "input"), (job, stack.log())
    assert "upload it again" in job["error"]
    write_figures("deleted_upload", _figures([job], "input"))


def test_a_full_temp_disk_fails_as_storage(stack, tmpfs) -> None:
    if tmpfs is None:
        pytest.skip("mount -t tmpfs is not permitted here (needs root or CAP_SYS_ADMIN): no real full disk to test")
    filler = tmpfs / "filler"
    with filler.open("wb", buffering=0) as out, pytest.raises(OSError, match="No space left"):
        while True:  # to the last byte
            out.write(bytes(1 << 12))
    assert os.statvfs(tmpfs).f_bavail == 0
    try:
        job_id = stack.submit(1, **ONE_STEP)[0]
        job = stack.wait_all([job_id], timeout_s=60)[job_id]
    finally:
        filler.unlink()
    assert (job["state"], job["error_type"]) == ("failed", "storage"), (job, stack.log())
    assert job["error"] == "the worker's disk is full; retry later"
    after = stack.submit(1, **ONE_STEP)[0]
    assert stack.wait_all([after], timeout_s=60)[after]["state"] == "succeeded", stack.log()
    write_figures("full_temp_disk", _figures([job], "storage"))


def test_a_queued_job_whose_message_was_lost_is_failed_by_the_reaper(stack, template) -> None:
    job_id = _record(stack, template)
    stack.db.sadd(active_key("anonymous"), job_id)
    ended = stack.wait_all([job_id], timeout_s=20)[job_id]
    assert (ended["state"], ended["error_type"]) == ("failed", "internal"), ended
    assert "message was lost" in ended["error"]
    assert not stack.db.sismember(active_key("anonymous"), job_id)
    assert b'dvd360_jobs_reaped_total{action="failed",reason="lost_message"}' in stack.api.get("/metrics").content
    write_figures("lost_message", _figures([ended], "internal"))


def test_an_active_slot_with_no_job_behind_it_is_given_back(stack) -> None:
    stale = "f" * 32  # reserved, then the request died before its record was written
    stack.db.sadd(active_key("someone"), stale)
    deadline = time.monotonic() + 20
    while stack.db.sismember(active_key("someone"), stale):
        assert time.monotonic() < deadline, "the reaper did not heal the active set"
        time.sleep(0.2)


def test_a_running_job_with_no_lease_is_requeued_then_failed_at_the_cap(stack, template) -> None:
    store = job_store(stack.redis_url)
    orphan = _record(stack, template)  # a worker took it, acknowledged it, vanished
    store.update(orphan, state="running", deliveries=1)
    capped = _record(stack, template)
    store.update(capped, state="running", deliveries=MAX_DELIVERIES)
    jobs = stack.wait_all([orphan, capped], timeout_s=60)
    assert jobs[orphan]["state"] == "succeeded" and jobs[orphan]["deliveries"] == 2, stack.log()
    assert (jobs[capped]["state"], jobs[capped]["error_type"]) == ("failed", "internal")
    assert "repeatedly" in jobs[capped]["error"]
    write_figures("lapsed_lease", {**_figures(list(jobs.values()), "internal"), "requeued": 1})


def test_a_request_that_cannot_finish_in_the_time_limit_is_refused(stack) -> None:
    largest = {"num_frames": 128, "height": 256, "width": 512, "steps": 100}  # the tiny model's limits
    refused = stack.api.post("/generate", json={"prompt": "too long", **largest})
    assert refused.status_code == 422, refused.text
    assert f"time limit of {TIME_LIMIT_S} s" in refused.json()["detail"]
    fits = stack.api.post("/generate", json={"prompt": "fits", **ONE_STEP})
    assert fits.status_code == 202
    stack.api.post(f"/jobs/{fits.json()['id']}/cancel")  # no need to run it


def _figures(jobs: list[dict], error_type: str) -> dict:
    return {
        "jobs": len(jobs),
        "faults_injected": len(jobs),
        "succeeded": sum(j["state"] == "succeeded" for j in jobs),
        "failed_with_right_error_type": sum(j["state"] == "failed" and j["error_type"] == error_type for j in jobs),
        "stuck": sum(j["state"] in ("queued", "running") for j in jobs),
        "lost": 0,
    }
