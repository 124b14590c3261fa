"""S3 end to end against a real S3 server (SeaweedFS, signatures checked), a real Redis server and a Celery
worker process: upload a motion file, generate, download the MP4 through its presigned URL, ffprobe it."""

from __future__ import annotations

import io
import time

import httpx
import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient

from api.app import create_app
from core.settings import Settings
from core.storage import S3Storage
from tests.processes import S3_BUCKET, S3Server, start_worker
from tests.tools import spherical_side_data, video_stream

pytestmark = pytest.mark.integration
SMALL = {"num_frames": 8, "height": 64, "width": 128, "steps": 2, "seed": 3}


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = S3Server(tmp_path_factory.mktemp("s3"))
    server.start()
    yield server
    server.stop()


def test_generate_with_s3_storage_and_presigned_download(s3, redis_url, tmp_path) -> None:
    redis.Redis.from_url(redis_url).flushdb()
    env = {"DVD360_REDIS_URL": redis_url, **s3.settings_env()}
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        settings = Settings(**{k[7:].lower(): v for k, v in env.items()}, auth=False, data_dir=tmp_path)
        api = TestClient(create_app(settings))
        assert api.get("/readyz").json() == {"status": "ready"}
        flow = io.BytesIO()
        np.save(flow, np.full((8, 32, 64, 2), 1.5, np.float32))
        uploaded = api.post("/flows", files={"file": ("m.npy", flow.getvalue())}, data={"kind": "raw_flow"}).json()
        stored = s3.client().list_objects_v2(Bucket=S3_BUCKET, Prefix="uploads/")["Contents"]
        assert [o["Key"] for o in stored] == [f"uploads/{uploaded['id']}.npy"]  # no shared disk needed

        job = api.post("/generate", json={"prompt": "clouds", **SMALL, "flow_id": uploaded["id"]}).json()
        deadline = time.monotonic() + 90
        while (job := api.get(f"/jobs/{job['id']}").json())["state"] not in ("succeeded", "failed", "canceled"):
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
            time.sleep(0.3)
        assert job["state"] == "succeeded", job["error"]
        url = job["outputs"]["video_url"]
        assert url.startswith(s3.endpoint) and "X-Amz-Signature=" in url and "X-Amz-Expires=3600" in url
        video = httpx.get(url)
        assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
        (tmp_path / "video.mp4").write_bytes(video.content)
        assert video_stream(tmp_path / "video.mp4")["width"] == 128
        assert spherical_side_data(tmp_path / "video.mp4")["projection"] == "equirectangular"
        assert httpx.get(url.replace("X-Amz-Signature=", "X-Amz-Signature=0")).status_code == 403
        assert httpx.get(job["outputs"]["poster_url"]).headers["content-type"] == "image/jpeg"
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def test_presigned_urls_use_the_public_endpoint(s3) -> None:
    settings = Settings(**{k[7:].lower(): v for k, v in s3.settings_env().items()})
    public = settings.model_copy(update={"s3_public_endpoint_url": "https://media.example.com"})
    url, expires = S3Storage(public).url("outputs/x/video.mp4", 600)
    assert url.startswith("https://media.example.com/dvd360/outputs/x/video.mp4?")
    assert "X-Amz-Expires=600" in url and abs(expires - time.time() - 600) < 5
