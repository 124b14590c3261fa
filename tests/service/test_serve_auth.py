"""`dvd360 serve` as a user starts it: refuses to expose an open service on the network, and with DVD360_AUTH=1
creates one API key, keeps it in the data folder and prints it (real Redis, Celery worker and API)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, free_port
from tests.processes import spawn, stop

pytestmark = pytest.mark.integration
DVD360 = str(Path(sys.executable).parent / "dvd360")


def serve_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVD360_")}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def test_a_network_address_without_auth_is_refused_before_anything_starts(tmp_path) -> None:
    result = subprocess.run(
        [DVD360, "serve", "--host", "0.0.0.0", "--port", str(free_port()), "--data-dir", str(tmp_path)],
        capture_output=True, text=True, env=serve_env(), timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert "DVD360_AUTH=1" in result.stderr and "--insecure" in result.stderr
    assert not (tmp_path / "redis").exists()  # nothing was started


def test_auth_on_prints_a_key_kept_in_the_data_folder(tmp_path) -> None:
    port, log = free_port(), tmp_path / "serve.log"
    command = [DVD360, "serve", "--port", str(port), "--data-dir", str(tmp_path / "data")]
    with log.open("w") as out:
        proc = spawn(command, env=serve_env(DVD360_AUTH="1"), stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        deadline = time.monotonic() + 180  # a loaded 2-core machine starts Redis, two workers and the API slowly
        while "API key: " not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        key = log.read_text().split("API key: ")[1].split(",")[0]
        stored = tmp_path / "data" / "api-key"
        assert stored.read_text().strip() == key and stored.stat().st_mode & 0o777 == 0o600
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as api:
            assert api.get("/jobs").status_code == 401
            assert api.get("/jobs", headers={"X-API-Key": key}).status_code == 200
            assert api.get("/jobs", headers={"Authorization": f"Bearer {key}"}).json()["total"] == 0
    finally:
        stop(proc)
