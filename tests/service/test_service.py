"""The service end to end against real parts: `dvd360 serve` (a Redis server, a Celery worker process, the
API; tiny model; local storage with signed links). Every result is checked with ffprobe."""

from __future__ import annotations

import hmac
import http.server
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import ClassVar

import httpx
import numpy as np
import pytest
from standardwebhooks import Webhook

from core.signing import WebhookVerificationError, verify_webhook, webhook_secret
from models.media.video_writer import write_video
from tests.conftest import SERVE_LOG, SIGNING_KEY, free_port
from tests.hostile_files import make_hostile_files
from tests.tools import decoded_md5, spherical_side_data, video_stream

pytestmark = pytest.mark.integration
SMALL = {"num_frames": 8, "height": 64, "width": 128, "steps": 3, "seed": 5}
TERMINAL = {"succeeded", "failed", "canceled"}


def wait_for(client: httpx.Client, job_id: str, states: set[str], timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        if job["state"] in states:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} stayed {job['state']}")


@pytest.fixture
def client(service):
    with httpx.Client(base_url=service, timeout=30) as c:
        yield c


def test_generate_poll_download_a_spherical_mp4(client, tmp_path) -> None:
    answer = client.post("/generate", json={"prompt": "a volcano at sunset", **SMALL})
    assert answer.status_code == 202 and answer.headers["location"] == f"/jobs/{answer.json()['id']}"
    job = wait_for(client, answer.json()["id"], TERMINAL)
    assert job["state"] == "succeeded", job["error"]
    assert job["seed"] == 5 and job["progress"] == {"step": 3, "total": 3, "percent": 100.0}
    video = client.get(job["outputs"]["video_url"])
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    path = tmp_path / "video.mp4"
    path.write_bytes(video.content)
    probe = video_stream(path)
    assert (probe["width"], probe["height"], probe["codec_name"]) == (128, 64, "h264")
    assert spherical_side_data(path)["projection"] == "equirectangular"
    for name in ("poster_url", "views_url"):
        picture = client.get(job["outputs"][name])
        assert picture.status_code == 200 and picture.content[:2] == b"\xff\xd8"  # JPEG
    assert job["outputs"]["expires_at"] > time.time()
    tampered = job["outputs"]["video_url"].replace("sig=", "sig=0")
    assert client.get(tampered).status_code == 403


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"prompt": ""}, "prompt"),
        ({"num_frames": 200}, "num_frames"),
        ({"steps": 0}, "steps"),
        ({"guidance_scale": 31}, "guidance_scale"),
        ({"height": 64, "width": 256}, "width must be 2 x height"),
        ({"seed": -1}, "seed"),
        ({"flow_id": "../etc"}, "flow_id"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_validation_names_the_field(client, change, field) -> None:
    answer = client.post("/generate", json={"prompt": "x", **SMALL, **change})
    assert answer.status_code == 422
    assert field in json.dumps(answer.json())


def test_unknown_base_model_lists_the_valid_ones(client) -> None:
    answer = client.post("/generate", json={"prompt": "x", **SMALL, "base_model": "sdxl"})
    assert answer.status_code == 422 and "use one of tiny" in answer.json()["detail"][0]["msg"]
    assert client.post("/generate", json={"prompt": "x", **SMALL, "flow_id": "0" * 32}).status_code == 422


def test_queued_and_running_jobs_can_be_canceled(client) -> None:
    long = client.post("/generate", json={"prompt": "long", **SMALL, "steps": 100, "num_frames": 16}).json()
    queued = client.post("/generate", json={"prompt": "queued", **SMALL}).json()
    wait_for(client, long["id"], {"running"})
    canceled = client.post(f"/jobs/{queued['id']}/cancel").json()
    assert canceled["state"] == "canceled"
    assert client.delete(f"/jobs/{long['id']}").status_code == 200
    stopped = wait_for(client, long["id"], TERMINAL, timeout=30)
    assert stopped["state"] == "canceled" and stopped["progress"]["step"] < 100
    assert wait_for(client, queued["id"], TERMINAL)["started_at"] is None  # never ran


def test_motion_uploads(client, tmp_path) -> None:
    flow = np.zeros((8, 32, 64, 2), np.float32)
    flow[..., 0] = 2
    np.save(tmp_path / "flow.npy", flow)
    with (tmp_path / "flow.npy").open("rb") as f:
        uploaded = client.post("/flows", files={"file": ("flow.npy", f)}, data={"kind": "raw_flow"})
    assert uploaded.status_code == 201, uploaded.text
    job = client.post("/generate", json={"prompt": "moving", **SMALL, "flow_id": uploaded.json()["id"]}).json()
    assert wait_for(client, job["id"], TERMINAL)["state"] == "succeeded"

    frames = np.random.default_rng(0).integers(0, 255, (1, 64, 128, 3), np.uint8).repeat(10, 0)
    clip = write_video(np.stack([np.roll(f, 3 * t, axis=1) for t, f in enumerate(frames)]), tmp_path / "clip.mp4")
    with clip.open("rb") as f:
        uploaded = client.post("/flows", files={"file": ("clip.mp4", f)}, data={"kind": "panorama_clip"})
    assert uploaded.status_code == 201, uploaded.text
    job = client.post("/generate", json={"prompt": "copied", **SMALL, "flow_id": uploaded.json()["id"]}).json()
    assert wait_for(client, job["id"], TERMINAL)["state"] == "succeeded"
    assert f"job {job['id']}: the clip's motion was measured with raft" in SERVE_LOG.read_text()

    big = tmp_path / "big.npy"
    np.save(big, np.zeros((4, 256, 512, 2), np.float32))  # 4 MB > the 1 MB cap of this test service
    with big.open("rb") as f:
        assert client.post("/flows", files={"file": ("big.npy", f)}, data={"kind": "raw_flow"}).status_code == 413
    assert client.post("/flows", files={"file": ("x.exe", b"MZ")}).status_code == 422


def test_a_long_looping_video_interpolated_to_24_fps(client, tmp_path) -> None:
    body = {"prompt": "an ambient loop", **SMALL, "num_frames": 24, "loop": True, "interpolate_to": 24}
    job = wait_for(client, client.post("/generate", json=body).json()["id"], TERMINAL, timeout=240)
    assert job["state"] == "succeeded", job["error"]
    path = tmp_path / "loop.mp4"
    path.write_bytes(client.get(job["outputs"]["video_url"]).content)
    probe = video_stream(path)
    assert probe["r_frame_rate"] == "24/1" and int(probe["nb_read_frames"]) == 72  # 24 frames at 8 fps, 3 s
    assert spherical_side_data(path)["projection"] == "equirectangular"


def test_hostile_uploads_are_refused_with_reasons(client, tmp_path) -> None:
    for hostile, path in make_hostile_files(tmp_path):
        answer = client.post("/flows", files={"file": (hostile.name, path.read_bytes())}, data={"kind": hostile.kind})
        assert answer.status_code in (413, 422), (hostile, answer.status_code, answer.text)
        assert answer.json()["detail"], hostile


def test_models_health_and_unknown_jobs(client) -> None:
    tiny = next(m for m in client.get("/models").json()["models"] if m["name"] == "tiny")
    assert tiny["description"] == "Built-in tiny model (random weights)"
    assert tiny["available"] is tiny["installed"] is True
    assert tiny["defaults"]["steps"] == 4 and tiny["limits"]["max_frames"] == 128
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    assert client.get("/jobs/" + "f" * 32).status_code == 404
    assert client.get("/jobs/../../etc/passwd").status_code == 404


def test_api_imports_without_torch(tmp_path) -> None:
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'diffusers', 'transformers'):\n"
        "            raise ImportError('the API must not import ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from api.app import create_app\n"
        "from core.settings import Settings\n"
        "app = create_app(Settings(redis_url='redis://127.0.0.1:1/0', data_dir=sys.argv[1]))\n"
        "print(len(app.openapi()['paths']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", blocker, str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) >= 10  # every route is there: /generate, /jobs..., /flows, /models, health, files


def test_a_job_above_the_native_size_is_refined_in_windows_and_scored(client, tmp_path) -> None:
    """256 x 512 is 16x the tiny model's native area: spatial windows, a refine stage, and the quality figures."""
    body = {"prompt": "a canyon", "num_frames": 4, "height": 256, "steps": 2, "guidance_scale": 1.0, "seed": 3}
    job = wait_for(client, client.post("/generate", json=body).json()["id"], TERMINAL, timeout=180)
    assert job["state"] == "succeeded", job["error"]
    assert job["request"]["width"] == 512 and job["request"]["refine"] is True
    assert job["progress"]["total"] > 2  # the refine stages' steps are counted too
    figures = job["quality_figures"]
    assert 0.5 < figures["seam_ratio"] < 2 and 0.5 < figures["spatial_window_seam_ratio"] < 2, figures
    assert figures["loop_closure"] is None and figures["window_seam_ratio"] is None  # not a loop; one window
    assert job["timings"]["step_s"] > 0
    (tmp_path / "big.mp4").write_bytes(client.get(job["outputs"]["video_url"]).content)
    probe = video_stream(tmp_path / "big.mp4")
    assert (probe["width"], probe["height"], int(probe["nb_read_frames"])) == (512, 256, 4)


def test_the_cli_and_the_service_make_the_same_frames(client, tmp_path) -> None:
    """One Generator serves `dvd360 generate` and the worker: a fixed-seed request gives bit-identical frames."""
    request = {"num_frames": 8, "height": 64, "width": 128, "steps": 3, "seed": 21, "guidance_scale": 6.0}
    job = wait_for(client, client.post("/generate", json={"prompt": "a salt flat", **request}).json()["id"], TERMINAL)
    assert job["state"] == "succeeded", job["error"]
    (tmp_path / "service.mp4").write_bytes(client.get(job["outputs"]["video_url"]).content)
    options = ["--frames", "8", "--height", "64", "--width", "128", "--steps", "3", "--seed", "21", "--guidance", "6"]
    done = subprocess.run(
        [str(Path(sys.executable).parent / "dvd360"), "generate", "--prompt", "a salt flat", *options,
         "--out", str(tmp_path / "cli.mp4")],
        capture_output=True, text=True, timeout=180, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert decoded_md5(tmp_path / "cli.mp4") == decoded_md5(tmp_path / "service.mp4")


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict, dict, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        first = not self.received
        self.received.append((json.loads(body), dict(self.headers), body))
        self.send_response(500 if first else 204)  # the first delivery fails: it must be retried
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_webhooks_report_state_changes_signed_and_retried(client) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        hook = {"webhook_url": url, "webhook_events": ["start", "completed"]}  # the default is completed only
        job = client.post("/generate", json={"prompt": "hooked", **SMALL, **hook}).json()
        assert wait_for(client, job["id"], TERMINAL)["state"] == "succeeded"
        deadline = time.monotonic() + 30
        # the first delivery failed: done when it came again (after ~2 s of backoff) and both events arrived
        while len(_Receiver.received) < 3 or {p["event"] for p, *_ in _Receiver.received} != {
            "job.running",
            "job.succeeded",
        }:
            assert time.monotonic() < deadline, _Receiver.received
            time.sleep(0.2)
        for payload, headers, body in _Receiver.received:
            assert payload["job"]["id"] == job["id"]
            # Standard Webhooks, checked by its reference library with the secret the package names
            assert Webhook(webhook_secret(SIGNING_KEY)).verify(body, headers) == payload
            assert verify_webhook(SIGNING_KEY, headers, body) == payload
            expected = "sha256=" + hmac.new(SIGNING_KEY.encode(), body, "sha256").hexdigest()
            assert headers["X-Dvd360-Signature"] == expected  # the older header, for one release
            with pytest.raises(WebhookVerificationError):
                verify_webhook("another-key", headers, body)
        first_event = _Receiver.received[0][0]["event"]
        deliveries = [(p["event"], h["webhook-id"]) for p, h, _ in _Receiver.received]
        assert [event for event, _ in deliveries].count(first_event) == 2
        retried = {message_id for event, message_id in deliveries if event == first_event}
        assert len(retried) == 1  # a retry carries its event's webhook-id again: receivers drop duplicates
        assert len({message_id for _, message_id in deliveries}) == 2
    finally:
        server.shutdown()


def test_job_timings_and_queue_overhead_are_reported(client) -> None:
    job = client.post("/generate", json={"prompt": "timed", **SMALL}).json()
    assert job["timings"]["total_s"] is None
    done = wait_for(client, job["id"], TERMINAL)["timings"]
    assert 0 < done["pipeline_s"] <= done["running_s"] <= done["total_s"]
    assert done["queued_s"] >= 0 and abs(done["queued_s"] + done["running_s"] - done["total_s"]) < 0.01


def test_no_secrets_in_the_logs(client) -> None:
    done = wait_for(client, client.post("/generate", json={"prompt": "x", **SMALL}).json()["id"], TERMINAL)
    assert client.get(done["outputs"]["video_url"]).status_code == 200
    secret = "dvd360-secret-key-that-must-not-be-logged"
    client.get("/jobs", headers={"X-API-Key": secret, "Authorization": f"Bearer {secret}"})
    job = client.post("/generate", json={"prompt": "logged?", **SMALL}).json()
    wait_for(client, job["id"], TERMINAL)
    log = SERVE_LOG.read_text()
    assert "dvd360.generate" in log and "POST /generate" in log  # the log is there and has requests in it
    assert secret not in log and SIGNING_KEY not in log
    assert "GET /files/" in log and not re.search(r"sig=[0-9a-f]{8}", log)  # download links are redacted
