"""Peak memory of the processes that decode hostile uploads (tests/hostile_files.py), from the kernel's own
record of each process's peak resident size (VmHWM in /proc/<pid>/status):

- the API: a real uvicorn process (as `dvd360 api` runs it) receives every hostile file by POST /flows and
  inline in POST /generate; its peak is read after warm-up uploads of valid files and again at the end;
- the worker's decoding: a fresh Python process runs what a generation worker runs on a stored upload
  (`load_flow_condition` with the job's kind, 16 frames at 512 x 1024, the DIS flow backend) on every hostile file,
  after warming the same code on valid files. Not a Celery worker: the job machinery around the call allocates
  nothing per file, and a pool child's peak would include model loading and generation;
- the upload check at once: a fresh Python process runs what the API runs to check an upload (`load_flow_condition`
  at 8 x 64 x 128 with loop, then `motion_length`) on several copies of one file in threads, as the API's request
  threads do (`python -m tests.hostile_memory concurrent FILE KIND COPIES` prints the figures).

Used by tests/reliability/test_hostile_input.py, tests/media/test_raw_flow_memory.py and
benchmarks/reliability_figures.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np

from tests.hostile_files import HOSTILE, make_hostile_files
from tests.processes import wait_ready

ROOT = Path(__file__).resolve().parents[1]
WORKER_SIZE = (16, 512, 1024)  # frames, height, width: the largest condition a default worker decodes
CHECK_SIZE = (8, 64, 128)  # what the API decodes to check an upload (api/uploads.py)


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set size so far (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def valid_files(folder: Path) -> list[tuple[str, Path]]:
    """(kind, path) of small valid uploads, one per kind, to warm each decoding path before measuring."""
    from models.media.video_writer import write_video

    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "valid.npy", np.zeros((20, 32, 64, 2), np.float32))
    frames = np.random.default_rng(0).random((20, 32, 64, 3), dtype=np.float32)
    video = write_video(frames, folder / "valid.mp4", fps=8)
    return [("raw_flow", folder / "valid.npy"), ("flow_video", video), ("panorama_clip", video)]


def api_peak_growth(redis_url: str, folder: Path, port: int) -> dict:
    """Upload every hostile file to a real API process; its peak RSS before and after, and every answer."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVD360_")}
    env.update(
        PYTHONPATH=str(ROOT),
        DVD360_REDIS_URL=redis_url,
        DVD360_DATA_DIR=str(folder / "data"),
        DVD360_AUTH="false",
        DVD360_SIGNING_KEY="k",
        DVD360_MAX_UPLOAD_MB="8",  # above every hostile file: each one reaches the decoders
        DVD360_RATE_LIMIT="1000/second",
    )
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--port", str(port)]
    with (folder / "api.log").open("ab") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, [process], path="/healthz")
        form = {"prompt": "x", "num_frames": "8", "height": "64", "width": "128", "steps": "1"}
        with httpx.Client(base_url=url, timeout=60) as client:
            for kind, path in valid_files(folder / "valid"):
                answer = client.post("/flows", files={"file": (path.name, path.read_bytes())}, data={"kind": kind})
                assert answer.status_code == 201, answer.text
            baseline = peak_rss_mb(process.pid)
            answers = {}
            for hostile, path in make_hostile_files(folder / "hostile"):
                data = path.read_bytes()
                upload = client.post("/flows", files={"file": (hostile.name, data)}, data={"kind": hostile.kind})
                inline = client.post(
                    "/generate", files={"file": (hostile.name, data)}, data={**form, "kind": hostile.kind}
                )
                answers[hostile.name] = (upload.status_code, inline.status_code)
        peak = peak_rss_mb(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return {"baseline_mb": baseline, "peak_mb": peak, "growth_mb": peak - baseline, "answers": answers}


def worker_peak_growth(folder: Path) -> dict:
    """Decode every hostile file as a worker does, in a fresh process; its peak RSS before and after."""
    make_hostile_files(folder / "hostile")  # made here: making them costs the measured process nothing
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVD360_")} | {"PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "tests.hostile_memory", str(folder)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(done.stdout.splitlines()[-1])


def _decode_all(folder: Path) -> dict:
    from models.media.errors import FlowInputError
    from models.media.flow_video import load_flow_condition

    for kind, path in valid_files(folder / "valid"):
        load_flow_condition(path, kind, 8, 64, 128)  # warms codecs and readers at a small size
    baseline = peak_rss_mb(os.getpid())
    refused = {}
    for hostile in HOSTILE:
        path = folder / "hostile" / hostile.name
        try:
            load_flow_condition(path, hostile.kind, *WORKER_SIZE, "dis")
            refused[hostile.name] = None
        except FlowInputError as exc:
            refused[hostile.name] = str(exc)
    peak = peak_rss_mb(os.getpid())
    return {"baseline_mb": baseline, "peak_mb": peak, "growth_mb": peak - baseline, "refused": refused}


def concurrent_check_growth(path: Path, kind: str, copies: int) -> dict:
    """Peak RSS growth of a fresh process checking `copies` uploads of `path` at once, as the API checks one."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVD360_")} | {"PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "tests.hostile_memory", "concurrent", str(path), kind, str(copies)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def _check_at_once(path: Path, kind: str, copies: int) -> dict:
    from concurrent.futures import ThreadPoolExecutor

    from models.media.flow_video import load_flow_condition, motion_length

    def check(upload: Path) -> int:
        load_flow_condition(upload, kind, *CHECK_SIZE, loop=True)
        return motion_length(upload, kind)

    with ThreadPoolExecutor(copies) as pool:  # the same threads warm the code on a small valid file of the kind
        warm = {kind: path for kind, path in valid_files(path.parent / "valid")}[kind]
        list(pool.map(check, [warm] * copies))
        baseline = peak_rss_mb(os.getpid())
        lengths = list(pool.map(check, [path] * copies))
    peak = peak_rss_mb(os.getpid())
    return {"baseline_mb": baseline, "peak_mb": peak, "growth_mb": peak - baseline, "lengths": lengths}


if __name__ == "__main__":
    if sys.argv[1] == "concurrent":
        print(json.dumps(_check_at_once(Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]))))
    else:
        print(json.dumps(_decode_all(Path(sys.argv[1]))))
