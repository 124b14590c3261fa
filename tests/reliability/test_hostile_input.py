"""Hostile input through the API (in process, real Redis): every bad media file of tests/hostile_files.py is
refused with a 4xx and a reason, by POST /flows and inline in POST /generate, and nothing is enqueued; the same
files keep a real API process and a process decoding them as a worker does under a fixed memory budget; path
traversal and control characters in names, ids and keys; oversized headers and bodies against real uvicorn."""

from __future__ import annotations

import http.client
import json
import time
from urllib.parse import quote

import httpx
import pytest
import redis
from fastapi.testclient import TestClient

from api.app import create_app
from cli.serve import free_port
from core.settings import Settings
from core.storage import LocalStorage
from tests.hostile_files import HOSTILE, join_videos, make_hostile_files
from tests.hostile_memory import api_peak_growth, worker_peak_growth
from tests.reliability.harness import write_figures

pytestmark = pytest.mark.integration
FORM = {"prompt": "x", "num_frames": "8", "height": "64", "width": "128", "steps": "1"}
PEAK_GROWTH_BUDGET_MB = 300


@pytest.fixture
def api(redis_url, tmp_path):
    redis.Redis.from_url(redis_url).flushdb()
    settings = Settings(redis_url=redis_url, data_dir=tmp_path, auth=False, signing_key="k", max_upload_mb=1)
    return TestClient(create_app(settings))


def test_hostile_files_are_refused_and_nothing_is_enqueued(api, redis_url, tmp_path) -> None:
    db = redis.Redis.from_url(redis_url)
    rejected, answers = 0, []
    for hostile, path in make_hostile_files(tmp_path / "hostile"):
        data = path.read_bytes()
        upload = api.post("/flows", files={"file": (hostile.name, data)}, data={"kind": hostile.kind})
        inline = api.post("/generate", files={"file": (hostile.name, data)}, data={**FORM, "kind": hostile.kind})
        for answer in (upload, inline):
            assert answer.status_code in (413, 422), (hostile, answer.status_code, answer.text)
            assert isinstance(answer.json()["detail"], str) and answer.json()["detail"], hostile
        rejected += 1
        answers.append(inline.status_code)
    assert rejected >= 30
    assert db.llen("gen.tiny") == 0 and not list(db.scan_iter("dvd360:job:*"))  # nothing enqueued, no record
    assert not list(db.scan_iter("dvd360:flow:*")) and not (tmp_path / "storage" / "uploads").exists()
    write_figures("hostile_files", {"hostile_files": rejected, "hostile_files_rejected": rejected, "enqueued": 0})


def test_hostile_files_stay_within_a_memory_budget(redis_url, tmp_path) -> None:
    """Peak RSS growth (VmHWM) of a real API process receiving every hostile file (uploads capped at 8 MB, so
    each reaches the decoders), and of a process decoding them as a worker does at 16 x 512 x 1024."""
    redis.Redis.from_url(redis_url).flushdb()
    api = api_peak_growth(redis_url, tmp_path / "api", free_port())
    assert {name for name, codes in api["answers"].items() if set(codes) <= {422}} == {h.name for h in HOSTILE}
    worker = worker_peak_growth(tmp_path / "worker")
    assert [name for name, reason in worker["refused"].items() if reason is None] == []
    assert api["growth_mb"] < PEAK_GROWTH_BUDGET_MB, api
    assert worker["growth_mb"] < PEAK_GROWTH_BUDGET_MB, worker
    write_figures(
        "hostile_memory",
        {f"{who}_{k}": round(figures[k], 1) for who, figures in (("api", api), ("worker", worker)) for k in figures
         if k.endswith("_mb")},
    )  # fmt: skip


def test_a_size_change_past_the_first_frames_is_refused_at_upload(api, tmp_path) -> None:
    """The upload check decodes every frame (issue 28, item 18): a video that grows at frame 12, past the 9 frames
    the API's small condition reads, gets a 422 naming the frame, by POST /flows and inline in POST /generate
    (it used to be accepted and fail only in the worker)."""
    path = tmp_path / "late-growth.mkv"
    join_videos(path, [("128x64", 12, ("-c:v", "mjpeg")), ("512x256", 6, ("-c:v", "mjpeg"))])
    upload = api.post("/flows", files={"file": (path.name, path.read_bytes())}, data={"kind": "flow_video"})
    inline = api.post("/generate", files={"file": (path.name, path.read_bytes())}, data={**FORM, "kind": "flow_video"})
    for answer in (upload, inline):
        assert answer.status_code == 422, answer.text
        assert "frame 12 is 512 x 256 but the video starts at 128 x 64" in answer.json()["detail"]


def test_traversal_and_control_characters(api, tmp_path) -> None:
    for path in ("/jobs/..%2F..%2Fetc%2Fpasswd", "/jobs/%00%0a", "/jobs/" + "a" * 5000, "/jobs/" + "G" * 32):
        assert api.get(path).status_code == 404, path
    assert api.get("/files/../../etc/passwd?expires=9999999999&sig=x").status_code in (403, 404)
    signer, expires = LocalStorage(tmp_path / "storage", "k"), int(time.time()) + 60
    for key in ("../../etc/passwd", "outputs/../../../etc/passwd"):
        signed = f"/files/{quote(key)}?expires={expires}&sig={signer.signature(key, expires)}"
        assert api.get(signed).status_code == 404, key  # even a validly signed key never leaves the folder
    flow = api.post("/flows", files={"file": ("../../evil\x00\n\x1b[31m.npy", _npy())}, data={"kind": "raw_flow"})
    name = flow.json()["name"]  # a label only: no folders, no control characters
    assert flow.status_code == 201 and name.startswith("evil") and name.isprintable() and "/" not in name
    assert [p.name for p in (tmp_path / "storage" / "uploads").iterdir()] == [flow.json()["id"] + ".npy"]
    bad_key = api.post("/generate", json={"prompt": "x"}, headers={"Idempotency-Key": "a\tb\x7f"})
    assert bad_key.status_code == 422


def test_oversized_headers_and_bodies_against_uvicorn(service) -> None:
    host, port = service.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("GET", "/jobs", headers={"X-Padding": "x" * 200_000})
        status = connection.getresponse().status
    except (ConnectionError, http.client.HTTPException):
        status = None  # the server closed the connection: refused, not crashed
    finally:
        connection.close()
    assert status in (None, 431)
    body = json.dumps({"prompt": "x" * (3 * 2**20)})
    assert (
        httpx.post(f"{service}/generate", content=body, headers={"Content-Type": "application/json"}).status_code == 413
    )
    assert httpx.get(f"{service}/healthz").status_code == 200  # still serving


def _npy() -> bytes:
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.zeros((8, 32, 64, 2), np.float32))
    return buffer.getvalue()
