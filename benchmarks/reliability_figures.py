"""Reliability figures as JSON (not a test): runs tests/reliability (real Redis, Celery workers killed with
SIGKILL, Redis restarted, S3 stopped, schemathesis fuzzing, hostile files, every fault class of issue 14), then adds
up what they measured; `fault_classes` has one row per injected fault class.

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

    from cli.redis_server import start_redis_server
    from cli.serve import free_port
    from tests.hostile_memory import api_peak_growth, worker_peak_growth

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


# fault class -> (figures file written by its test in tests/reliability, the error_type its failed jobs must carry)
FAULT_CLASSES = {
    "uncaught exception types (test hook)": ("exception_types", "out_of_memory|storage|internal"),
    "soft time limit": ("soft_time_limit", "timeout"),
    "child SIGKILL, slow-loading model": ("child_sigkill_slow_model", None),
    "worker SIGKILL mid-job": ("worker_kills", None),
    "lost broker message": ("lost_message", "internal"),
    "lapsed lease (worker vanished)": ("lapsed_lease", "internal"),
    "full temp disk": ("full_temp_disk", "storage"),
    "deleted upload": ("deleted_upload", "input"),
    "S3 outage": ("s3_outage", "storage"),
}


def fault_class_table(parts: dict) -> dict:
    """Per injected fault class: jobs submitted / succeeded / failed with the right error_type / stuck / lost."""
    table = {}
    for name, (part, error_type) in FAULT_CLASSES.items():
        p = parts.get(part)
        if p is None:
            table[name] = "not run (its test failed or was skipped: see pytest_summary)"
            continue
        stuck, lost = p.get("stuck", 0), p.get("lost", 0)
        table[name] = {
            "submitted": p["jobs"],
            "succeeded": p.get("succeeded", p["jobs"] - stuck - lost),
            "failed_right_error_type": p.get("failed_with_right_error_type", 0),
            "expected_error_type": error_type,
            "stuck": stuck,
            "lost": lost,
        }
    return table


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
        "fault_classes": fault_class_table(parts),
        "details": parts,
    }
    print(json.dumps(figures, indent=1))
    hostile_upload_memory()
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
