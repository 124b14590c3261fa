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
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
