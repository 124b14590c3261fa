"""Clean shutdown (issue 14, section 6): SIGTERM or SIGINT to `dvd360 serve` stops every process it started (Redis,
both Celery workers and their pool children, the reaper): none is left. `serve` prints its URL only once the API
listens."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, free_port
from tests.processes import processes_in_sessions, spawn

pytestmark = pytest.mark.integration


@pytest.mark.timeout(300)  # ~20 s alone; a loaded shared machine stretches the model warm-up
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_stops_every_child_on_a_signal(tmp_path, sig) -> None:
    port, out = free_port(), tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVD360_")} | {"PYTHONPATH": str(ROOT)}
    serve = spawn(
        [str(Path(sys.executable).parent / "dvd360"), "serve", "--port", str(port), "--data-dir", str(tmp_path)],
        cwd=ROOT, env=env, stdout=out.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    url_line = f"dvd360: http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while url_line not in out.read_text():
        assert time.monotonic() < deadline and serve.poll() is None, out.read_text()[-3000:]
        time.sleep(0.05)
    assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200  # listening once printed
    deadline = time.monotonic() + 120
    while len(processes_in_sessions({serve.pid})) < 6:  # serve, redis, 2 workers, a pool child, the reaper
        assert time.monotonic() < deadline, processes_in_sessions({serve.pid})
        time.sleep(0.2)

    serve.send_signal(sig)
    serve.wait(timeout=60)
    deadline = time.monotonic() + 30
    while left := processes_in_sessions({serve.pid}):
        assert time.monotonic() < deadline, f"left behind: {left}\n{out.read_text()[-3000:]}"
        time.sleep(0.2)
