"""Storage does not grow without bound (issue 14, section 3): with short TTLs the reaper deletes a finished job's
outputs and an upload's file, and GET /jobs/<id> of the expired job answers 410 with the reason; on S3 (a real
SeaweedFS server) the sweep deletes every object under the job's prefix."""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pytest
import redis

from core.jobs import FINISHED_KEY
from core.retention import UPLOADS_KEY, sweep, tombstone_key
from core.settings import Settings
from core.storage import S3Storage
from tests.processes import S3_BUCKET, S3Server
from tests.reliability.harness import ONE_STEP, Stack, write_figures

pytestmark = pytest.mark.integration


def _raw_flow() -> bytes:
    flow = io.BytesIO()
    np.save(flow, np.full((8, 32, 64, 2), 1.5, np.float32))
    return flow.getvalue()


def test_expired_outputs_and_uploads_are_deleted_and_the_job_answers_410(tmp_path) -> None:
    stack = Stack(tmp_path, DVD360_RESULT_TTL_S="3", DVD360_UPLOAD_TTL_S="3")
    try:
        stack.start_worker()
        job_id = stack.submit(1, **ONE_STEP)[0]
        uploaded = stack.api.post("/flows", files={"file": ("m.npy", _raw_flow())}, data={"kind": "raw_flow"})
        upload = tmp_path / "storage" / "uploads" / f"{uploaded.json()['id']}.npy"
        assert upload.is_file()
        assert stack.wait_all([job_id], timeout_s=90)[job_id]["state"] == "succeeded", stack.log()
        assert stack.output_files(job_id) == ["poster.jpg", "video.mp4", "views.jpg"]
        deadline = time.monotonic() + 30
        while stack.output_files(job_id) or upload.exists():
            assert time.monotonic() < deadline, (tmp_path / "reaper.log").read_text()[-2000:]
            time.sleep(0.2)
        assert not (tmp_path / "storage" / "outputs" / job_id).exists()
        gone = stack.api.get(f"/jobs/{job_id}")
        assert gone.status_code == 410 and "expired" in gone.json()["detail"] and "3 s" in gone.json()["detail"]
        assert stack.api.get(f"/jobs/{'0' * 32}").status_code == 404  # never existed: still 404
        metrics = stack.api.get("/metrics").text
        assert 'dvd360_retention_deleted_total{kind="job"} 1.0' in metrics
        assert 'dvd360_retention_deleted_total{kind="upload"} 1.0' in metrics
        write_figures("retention", {"jobs": 1, "outputs_deleted": 1, "uploads_deleted": 1, "answer_after": 410})
    finally:
        stack.close()


def test_the_sweep_deletes_every_object_of_an_expired_job_on_s3(tmp_path, redis_url) -> None:
    s3 = S3Server(tmp_path / "s3")
    s3.start()
    try:
        client, bucket = s3.client(), S3_BUCKET
        job_id, other = "a" * 32, "b" * 32
        for key in (f"outputs/{job_id}/video.mp4", f"outputs/{job_id}/poster.jpg", f"outputs/{other}/video.mp4"):
            client.put_object(Bucket=bucket, Key=key, Body=b"x")
        client.put_object(Bucket=bucket, Key="uploads/c.npy", Body=b"x")
        db = redis.Redis.from_url(redis_url)
        now = time.time()
        db.zadd(FINISHED_KEY, {f"{job_id}:alice": now - 100, f"{other}:bob": now})  # only the first is due
        db.zadd(UPLOADS_KEY, {f"{'c' * 32}:uploads/c.npy": now - 100})
        storage = S3Storage(Settings(**{k[7:].lower(): v for k, v in s3.settings_env().items()}))
        counts = sweep(db, storage, result_ttl_s=50, upload_ttl_s=50, now=now)
        assert counts == {"jobs_expired": 1, "uploads_expired": 1}
        keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
        assert keys == [f"outputs/{other}/video.mp4"]
        assert json.loads(db.get(tombstone_key(job_id)))["owner"] == "alice"
    finally:
        s3.stop()
