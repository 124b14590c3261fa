"""`dvd360 serve` as a newcomer runs it (issue 28, items 2 and 3): the console ends with the URL line while Redis',
Celery's (banners, the superuser SecurityWarning) and the API's output go to log files in the data folder; one
serve per data folder and per port: a second one is refused before it starts any process, naming the first, and a
lock left by a dead serve is taken over. Real processes (Redis, Celery workers, the reaper, the API)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from tests.conftest import ROOT, free_port
from tests.processes import kill_sessions, processes_in_sessions, spawn, stop, wait_ready

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]  # a loaded 2-core machine starts serve slowly
DVD360 = str(Path(sys.executable).parent / "dvd360")


def serve_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("DVD360_")} | {"PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    """One quiet serve, started on a data folder whose lock file names a process that has ended."""
    folder = tmp_path_factory.mktemp("serve-console")
    data = folder / "data"
    data.mkdir()
    ended = subprocess.Popen(["true"])
    ended.wait()
    (data / "serve.lock").write_text(f"{ended.pid} http://127.0.0.1:1\n")
    port, console = free_port(), folder / "console.log"
    with console.open("wb") as out:
        proc = spawn([DVD360, "serve", "--port", str(port), "--data-dir", str(data)], env=serve_env(), cwd=ROOT,
                     stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, [proc], console)
        worker, deadline = data / "logs" / "worker.log", time.monotonic() + 180
        while not worker.exists() or " ready." not in worker.read_text():  # Celery's "celery@host ready."
            assert proc.poll() is None and time.monotonic() < deadline, console.read_text()[-3000:]
            time.sleep(0.2)
        yield SimpleNamespace(proc=proc, data=data, url=url, console=console)
    finally:
        stop(proc)


def refused(command: list[str], log: Path) -> tuple[int, str, int]:
    """Run a serve expected to refuse: (exit code, its output, the most processes its session ever held)."""
    with log.open("wb") as out:
        proc = spawn(command, env=serve_env(), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    most, deadline = 0, time.monotonic() + 60
    try:
        while proc.poll() is None:
            most = max(most, len(processes_in_sessions({proc.pid})))
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.01)
    finally:
        kill_sessions({proc.pid})
    return proc.returncode, log.read_text(), most


def test_the_console_ends_with_the_url_and_the_services_write_to_log_files(running) -> None:
    console = running.console.read_text()
    last = console.strip().splitlines()[-1]
    logs = running.data / "logs"
    assert last.startswith(f"dvd360: {running.url}  (auth off, data in {running.data}, logs in {logs}"), console
    for noise in ("celery@", "SecurityWarning", "Uvicorn running", "Redis is starting", "Application startup", "KEY"):
        assert noise not in console, (noise, console)
    worker = (logs / "worker.log").read_text()
    assert "celery@" in worker and "[queues]" in worker  # Celery's banner
    if os.getuid() == 0:
        assert "SecurityWarning" in worker and "superuser privileges" in worker
    assert "celery@" in (logs / "webhooks.log").read_text()
    assert "Ready to accept connections" in (logs / "redis.log").read_text()
    assert "Application startup complete" in (logs / "api.log").read_text()
    assert (logs / "reaper.log").exists()
    assert httpx.get(f"{running.url}/healthz", timeout=10).status_code == 200
    assert "GET /healthz" in (logs / "api.log").read_text()  # requests are logged there, not on the console
    assert running.console.read_text().strip().splitlines()[-1] == last


def test_a_lock_left_by_a_dead_serve_is_taken_over(running) -> None:
    assert (running.data / "serve.lock").read_text().split() == [str(running.proc.pid), running.url]


def test_the_lock_names_the_running_serve_for_submit(running, tmp_path) -> None:
    from cli.single_instance import DataFolderLock, serving_url

    assert serving_url(running.data) == running.url  # what `dvd360 submit` talks to by default
    ended = DataFolderLock(tmp_path).acquire()
    ended.record("http://127.0.0.1:9")
    assert serving_url(tmp_path) == "http://127.0.0.1:9"
    ended.release()
    assert serving_url(tmp_path) is None and serving_url(tmp_path / "none") is None  # left behind, or never made


def test_a_second_serve_on_the_same_data_folder_refuses_before_starting_anything(running, tmp_path) -> None:
    command = [DVD360, "serve", "--port", str(free_port()), "--data-dir", str(running.data)]
    code, output, most = refused(command, tmp_path / "second.log")
    assert code == 2, output
    assert f"is in use by another dvd360 serve (PID {running.proc.pid}, {running.url})" in output
    assert most == 1  # the refused serve alone: no Redis, worker or reaper of its own was ever started
    assert httpx.get(f"{running.url}/readyz", timeout=10).status_code == 200  # the first one is untouched


def test_a_taken_port_refuses_before_starting_anything(tmp_path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [DVD360, "serve", "--port", str(port), "--data-dir", str(tmp_path / "data")]
        code, output, most = refused(command, tmp_path / "serve.log")
    assert code == 2, output
    assert f"cannot listen on 127.0.0.1:{port}" in output and f"held by PID {os.getpid()}" in output
    assert most == 1 and not (tmp_path / "data" / "redis").exists()
