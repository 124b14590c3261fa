"""The README's two commands: `dvd360 models pull` then `dvd360 serve` with no flags. The embedded service (real
Redis, Celery worker, API) offers the pulled model beside `tiny`, says it is installed, and generates with it."""

from __future__ import annotations

import os
import subprocess
import time

import httpx
import pytest

from cli.serve import free_port
from tests.conftest import ROOT
from tests.pull.pulling import DVD360, dvd360, pull_env, tiny_catalogue
from tests.tools import video_stream

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]  # deadlines for a loaded 2-core machine


def test_pull_then_serve_offers_and_runs_the_pulled_model(hub, tiny_files, tmp_path) -> None:
    env = pull_env(hub, tmp_path, tiny_catalogue(hub, tiny_files, tmp_path / "catalogue.yaml"))
    assert dvd360(env, "models", "pull", "tiny-real").returncode == 0

    port = free_port()
    serve_env = {k: v for k, v in env.items() if k not in ("HF_ENDPOINT", "HF_HUB_OFFLINE")}
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 (closed below)
    serve = subprocess.Popen(
        [DVD360, "serve", "--port", str(port), "--data-dir", str(tmp_path / "data")],
        env=serve_env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            deadline = time.monotonic() + 90
            while True:
                assert serve.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
                time.sleep(0.3)
            offered = {m["name"]: m for m in client.get("/models").json()["models"]}
            assert set(offered) == {"tiny", "tiny-real"} and offered["tiny-real"]["installed"] is True

            small = {"num_frames": 4, "height": 64, "width": 128, "steps": 2, "seed": 1}
            job = client.post("/generate", json={"prompt": "a lake", "base_model": "tiny-real", **small}).json()
            deadline = time.monotonic() + 120  # the worker loads the pulled model on its first job
            while (job := client.get(f"/jobs/{job['id']}").json())["state"] not in ("succeeded", "failed"):
                assert time.monotonic() < deadline, job
                time.sleep(0.2)
            assert job["state"] == "succeeded", job["error"]
            (tmp_path / "lake.mp4").write_bytes(client.get(job["outputs"]["video_url"]).content)
        probe = video_stream(tmp_path / "lake.mp4")
        assert (probe["width"], probe["height"], int(probe["nb_read_frames"])) == (128, 64, 4)
    finally:
        os.killpg(serve.pid, 15)
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, 9)
            serve.wait()
        log.close()
