"""Downloads that go wrong, against the real local server: killed mid-file and resumed, wrong checksums, 404 /
500 / truncated bodies / redirects, two pulls at once, a full disk. Nothing half-written is ever installed."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from models.weights_pull.errors import PullError
from models.weights_pull.sources import DiskFull, Retry, SizeLimit, fetch_url
from tests.pull.hub_server import COMMIT
from tests.pull.pulling import DVD360, dvd360, pull_env, sha256

BLOB = os.urandom(3 * 1024 * 1024 + 17)  # over three read chunks, so a kill lands mid-file


def one_file_catalogue(path: Path, file: dict, hf: dict | None = None) -> Path:
    component = {"files": [{"path": "blob.bin", **file}], "entry": "blob.bin", **({"hf": hf} if hf else {})}
    models = {"blob": {"sd15": "c", "motion_module": "c", "adapter": "c"}}
    path.write_text(yaml.safe_dump({"components": {"c": component}, "models": models}))
    return path


def wait_for(condition, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def nothing_installed(models: Path) -> bool:
    registry = models / "registry.yaml"
    return not (models / "c").exists() and (not registry.exists() or "blob" not in registry.read_text())


def test_killed_download_resumes_where_it_stopped(server, tmp_path) -> None:
    server.files["blob.bin"] = BLOB
    server.faults.add("/files/blob.bin", ("stall", 2 * 1024 * 1024))
    blob = {"urls": [f"{server.url}/files/blob.bin"], "sha256": sha256(BLOB)}
    catalogue = one_file_catalogue(tmp_path / "c.yaml", blob)
    env = pull_env(server, tmp_path, catalogue)
    partial = tmp_path / "models" / ".partial" / "c" / "blob.bin.partial"
    process = subprocess.Popen([DVD360, "models", "pull", "blob"], env=env, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: partial.exists() and partial.stat().st_size >= 1024 * 1024, "a partial download")
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        process.kill()
        server.faults.release()
    kept = partial.stat().st_size
    assert 0 < kept < len(BLOB) and nothing_installed(tmp_path / "models")

    done = dvd360(env, "models", "pull", "blob")
    assert done.returncode == 0, done.stderr
    assert server.gets("/files/blob.bin") == [None, f"bytes={kept}-"]  # the second GET asked only for the rest
    assert (tmp_path / "models" / "c" / "blob.bin").read_bytes() == BLOB
    assert not partial.exists()


def test_wrong_checksum_is_refused_and_nothing_installed(server, tmp_path) -> None:
    server.files["blob.bin"] = BLOB
    catalogue = one_file_catalogue(tmp_path / "c.yaml", {"urls": [f"{server.url}/files/blob.bin"], "sha256": "0" * 64})
    done = dvd360(pull_env(server, tmp_path, catalogue), "models", "pull", "blob")
    assert done.returncode == 1
    assert f"sha256 {sha256(BLOB)} does not match the published {'0' * 64}; refused, nothing installed" in done.stderr
    assert nothing_installed(tmp_path / "models")
    assert list((tmp_path / "models" / ".partial" / "c").iterdir()) == []  # the bad bytes are not kept either


def test_trust_on_first_use_then_a_changed_file_is_refused(server, tmp_path) -> None:
    server.files["blob.bin"] = BLOB
    catalogue = one_file_catalogue(tmp_path / "c.yaml", {"urls": [f"{server.url}/files/blob.bin"]})
    env = pull_env(server, tmp_path, catalogue)
    first = dvd360(env, "models", "pull", "blob")
    assert first.returncode == 0 and "c: no published sha256 for blob.bin" in first.stderr
    assert "trust on first use" in first.stderr
    recorded = json.loads((tmp_path / "models" / "models.lock.json").read_text())["components"]["c"]["blob.bin"]
    assert recorded["sha256"] == sha256(BLOB) and recorded["trust"] == "first use"
    assert dvd360(env, "models", "rm", "blob").returncode == 0

    server.files["blob.bin"] = BLOB[::-1]  # the same URL now serves other bytes
    second = dvd360(env, "models", "pull", "blob")
    assert second.returncode == 1 and "does not match the recorded at first pull" in second.stderr
    assert nothing_installed(tmp_path / "models")

    (tmp_path / "models" / "c").mkdir()  # and `verify` catches a file changed on disk
    server.files["blob.bin"] = BLOB
    assert dvd360(env, "models", "pull", "blob").returncode == 0
    (tmp_path / "models" / "c" / "blob.bin").write_bytes(BLOB[:-1] + b"x")
    verify = dvd360(env, "models", "verify")
    assert verify.returncode == 1 and "BAD c/blob.bin: sha256" in verify.stderr


def test_404_then_500s_truncation_and_redirect_are_survived(server, tmp_path) -> None:
    """Sources in order: a 404 URL (skipped), then a redirect to a file that answers 500 twice, then a body cut
    in half (resumed with Range), then the rest."""
    server.files["blob.bin"] = BLOB
    server.faults.add("/files/blob.bin", "500", "500", "truncate")
    urls = [f"{server.url}/files/nowhere.bin", f"{server.url}/redirect/blob.bin"]
    env = pull_env(server, tmp_path, one_file_catalogue(tmp_path / "c.yaml", {"urls": urls, "sha256": sha256(BLOB)}))
    done = dvd360(env, "models", "pull", "blob")
    assert done.returncode == 0, done.stderr
    assert server.gets("/files/nowhere.bin") == [None]  # a 404 is not retried
    ranges = server.gets("/files/blob.bin")
    assert ranges[:3] == [None, None, None] and len(ranges) == 4
    assert 0 < int(ranges[3].removeprefix("bytes=").rstrip("-")) <= len(BLOB) // 2  # only the missing part
    assert (tmp_path / "models" / "c" / "blob.bin").read_bytes() == BLOB


def test_hub_500_is_retried_and_a_web_page_is_refused(server, tmp_path) -> None:
    server.repos["tiny/blob"] = {"blob.bin": BLOB}
    path = f"/tiny/blob/resolve/{COMMIT}/blob.bin"
    server.faults.add(path, "500", "500")
    server.files["page.bin"] = BLOB
    server.faults.add("/files/page.bin", "html")
    catalogue = one_file_catalogue(
        tmp_path / "c.yaml", {"sha256": sha256(BLOB)}, hf={"repo": "tiny/blob", "revision": COMMIT}
    )
    done = dvd360(pull_env(server, tmp_path, catalogue), "models", "pull", "blob")
    assert done.returncode == 0, done.stderr
    assert server.gets(path) == [None, None, None]
    assert (tmp_path / "models" / "c" / "blob.bin").read_bytes() == BLOB

    page = one_file_catalogue(tmp_path / "p.yaml", {"urls": [f"{server.url}/files/page.bin"]})
    refused = dvd360(pull_env(server, tmp_path / "p", page), "models", "pull", "blob")
    assert refused.returncode == 1 and "answered with a web page, not the file" in refused.stderr


def test_offline_hub_setting_is_explained(server, tmp_path) -> None:
    catalogue = one_file_catalogue(tmp_path / "c.yaml", {}, hf={"repo": "tiny/blob", "revision": COMMIT})
    env = {**pull_env(server, tmp_path, catalogue), "HF_HUB_OFFLINE": "1"}
    done = dvd360(env, "models", "pull", "blob")
    assert done.returncode == 1 and "run the pull with HF_HUB_OFFLINE=0" in done.stderr


def test_two_pulls_at_once_download_once(server, tmp_path) -> None:
    server.files["blob.bin"] = BLOB
    server.faults.add("/files/blob.bin", ("slow", 1.5))  # the first download takes a while: the second pull waits
    catalogue = one_file_catalogue(tmp_path / "c.yaml", {"urls": [f"{server.url}/files/blob.bin"]})
    env = pull_env(server, tmp_path, catalogue)
    pulls = [
        subprocess.Popen([DVD360, "models", "pull", "blob"], env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        outputs = [p.communicate(timeout=60)[1] for p in pulls]
    finally:
        for p in pulls:
            p.kill()
    assert [p.returncode for p in pulls] == [0, 0], outputs
    assert server.gets("/files/blob.bin") == [None]
    assert any("installed by another pull" in out for out in outputs)
    lock = json.loads((tmp_path / "models" / "models.lock.json").read_text())
    assert lock["components"]["c"]["blob.bin"]["sha256"] == sha256(BLOB)


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs (a real full disk); needs root and mount."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("a real full disk needs a tmpfs mount, which needs root; the injected ENOSPC test covers it")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()}); the injected ENOSPC test covers it")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_fails_cleanly(server, tmp_path, small_disk) -> None:
    server.files["blob.bin"] = BLOB  # 3 MiB into 2 MiB
    catalogue = one_file_catalogue(tmp_path / "c.yaml", {"urls": [f"{server.url}/files/blob.bin"]})
    env = {**pull_env(server, tmp_path, catalogue), "DVD360_MODELS_DIR": str(small_disk / "models")}
    done = dvd360(env, "models", "pull", "blob")
    assert done.returncode == 1 and "disk full while writing" in done.stderr, done.stderr
    assert server.gets("/files/blob.bin") == [None]  # not retried: it cannot help
    assert nothing_installed(small_disk / "models")
    assert [p for p in (small_disk / "models").rglob("*") if p.is_file() and p.stat().st_size > 0] == []

    # with the size published the pull refuses before downloading anything
    sized = one_file_catalogue(tmp_path / "s.yaml", {"urls": [f"{server.url}/files/blob.bin"], "size": len(BLOB)})
    early = dvd360({**env, "DVD360_CATALOGUE": str(sized)}, "models", "pull", "blob")
    assert early.returncode == 1 and f"needs {len(BLOB)} bytes" in early.stderr
    assert server.gets("/files/blob.bin") == [None]


def test_enospc_in_the_writer_leaves_no_partial_file(server, tmp_path, monkeypatch) -> None:
    """ENOSPC injected into the file writer (a fake full disk, for machines where a tmpfs cannot be mounted)."""
    server.files["blob.bin"] = BLOB

    class FullDisk:
        def __init__(self, path, mode):
            self.file = open(path, mode)  # noqa: SIM115 (closed in __exit__)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

        def write(self, data):
            if self.file.tell() > 0:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.file.write(data)

    monkeypatch.setattr("models.weights_pull.sources.open", FullDisk, raising=False)
    dest = tmp_path / "blob.bin"
    with pytest.raises(DiskFull, match="disk full while writing"):
        no_bar = lambda *a: lambda n: None  # noqa: E731
        retry, limit = Retry(attempts=3, backoff_s=0), SizeLimit(len(BLOB), True)
        fetch_url(f"{server.url}/files/blob.bin", dest, {}, retry, no_bar, "blob", limit)
    assert list(tmp_path.iterdir()) == []
    assert issubclass(DiskFull, PullError)


def test_pulling_never_imports_torch() -> None:
    code = (
        "import sys, cli.main, cli.models, models.weights_pull.pull, models.weights_pull.sources; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
