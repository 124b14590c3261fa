"""Reliability figures as JSON (not a test): runs tests/reliability (real Redis, Celery workers killed with
SIGKILL, Redis restarted, S3 stopped, schemathesis fuzzing, hostile files), then adds up what they measured.

Goal: lost = duplicated = stuck = 5xx = 0.  Run: PYTHONPATH=. .venv/bin/python benchmarks/reliability_figures.py
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "test-artifacts" / "reliability"


def hostile_upload_memory() -> dict:
    """Peak RSS growth (VmHWM) of a real API process receiving every file of tests/hostile_files.py, and of a
    process decoding them as a worker does (16 x 512 x 1024): see tests/hostile_memory.py."""
    import tempfile

    from cli.serve import free_port
    from tests.hostile_memory import api_peak_growth, worker_peak_growth
    from worker.redis_server import start_redis_server

    port = free_port()
    server = start_redis_server(port)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            api = api_peak_growth(f"redis://127.0.0.1:{port}/0", Path(tmp) / "api", free_port())
            worker = worker_peak_growth(Path(tmp) / "worker")
    finally:
        server.terminate()
        server.wait(timeout=10)
    figures = {
        "hostile_files": len(api["answers"]),
        "api_answers_4xx": sum(all(400 <= c < 500 for c in codes) for codes in api["answers"].values()),
        "worker_refused": sum(reason is not None for reason in worker["refused"].values()),
        **{f"api_{k}": round(v, 1) for k, v in api.items() if k.endswith("_mb")},
        **{f"worker_{k}": round(v, 1) for k, v in worker.items() if k.endswith("_mb")},
    }
    print(json.dumps({"hostile_upload_memory": figures}, indent=1))
    return figures


def main() -> int:
    shutil.rmtree(FIGURES, ignore_errors=True)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/reliability"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    parts = {p.stem: json.loads(p.read_text()) for p in sorted(FIGURES.glob("*.json"))}
    fault_runs = [parts.get(name, {}) for name in ("worker_kills", "poison_job", "redis_restart", "s3_outage")]
    figures = {
        "tests_passed": run.returncode == 0,
        "pytest_summary": run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr[-500:],
        "jobs_run": sum(p.get("jobs", 0) for p in fault_runs),
        "faults_injected": sum(p.get("faults_injected", 0) for p in fault_runs),
        "lost": sum(p.get("lost", 0) for p in fault_runs),
        "duplicated": parts.get("worker_kills", {}).get("duplicated"),
        "stuck": parts.get("worker_kills", {}).get("stuck"),
        "fuzz_cases": parts.get("fuzz", {}).get("fuzz_cases"),
        "5xx": parts.get("fuzz", {}).get("5xx"),
        "hostile_files": parts.get("hostile_files", {}).get("hostile_files"),
        "hostile_files_rejected": parts.get("hostile_files", {}).get("hostile_files_rejected"),
        "details": parts,
    }
    print(json.dumps(figures, indent=1))
    hostile_upload_memory()
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
