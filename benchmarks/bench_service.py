"""Service speed on this machine, printed as JSON (not a test).

Against real processes here (redis-server, uvicorn serving our API with auth on, a Celery worker with the tiny
model): 50 concurrent clients on POST /generate and GET /jobs/{id}, each compared with a bare FastAPI endpoint
doing one Redis round trip (benchmarks/bare_app.py) served the same way in the same run (goal: ratio >= 0.5);
then queue overhead = a job's submit-to-finish time minus its pipeline time, tiny model (goal <= 150 ms).

On a 2-core machine the Python load generator shares the CPU with the servers and limits all three runs alike.
Run: PYTHONPATH=. .venv/bin/python benchmarks/bench_service.py [--clients 50] [--seconds 5] [--jobs 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import redis

from api.auth import create_key
from cli.redis_server import start_redis_server
from cli.serve import free_port, worker_command

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"num_frames": 8, "height": 64, "width": 128, "steps": 2}


def service_env(redis_url: str, data_dir: str, **settings: str) -> dict[str, str]:
    """The environment of the benchmark's API and worker processes: this run's Redis and folder, limits out of the
    way (a benchmark measures the service, not its 429s), the tiny model warm."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVD360_")}
    env.update(
        PYTHONPATH=str(ROOT),
        DVD360_REDIS_URL=redis_url,
        DVD360_DATA_DIR=data_dir,
        DVD360_SIGNING_KEY="bench",
        DVD360_RATE_LIMIT="1000000/second",
        DVD360_READ_RATE_LIMIT="1000000/second",
        DVD360_MAX_ACTIVE_JOBS="1000000",
        DVD360_WARM_MODELS="tiny",
        **settings,
    )
    return env


def uvicorn(target: str, port: int, env: dict[str, str]) -> subprocess.Popen:
    command = [sys.executable, "-m", "uvicorn", target, "--port", str(port), "--log-level", "warning"]
    if target.endswith("create_app"):
        command.append("--factory")
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/docs", timeout=1)
            return process
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError(f"{target} did not start")


async def load(url: str, method: str, clients: int, seconds: float, headers: dict, body: dict | None) -> dict:
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors
        while time.perf_counter() < stop:
            start = time.perf_counter()
            answer = await http.request(method, url, headers=headers, json=body)
            latencies.append(time.perf_counter() - start)
            errors += answer.status_code >= 400

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=30) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    latencies.sort()
    return {
        "requests_per_s": round(len(latencies) / seconds, 1),
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 1),
        "p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)], 1),
        "errors": errors,
    }


def ratio(ours: dict, bare: dict) -> dict:
    return {
        "throughput": round(ours["requests_per_s"] / bare["requests_per_s"], 3),
        "p50": round(bare["p50_ms"] / ours["p50_ms"], 3),
        "p99": round(bare["p99_ms"] / ours["p99_ms"], 3),
    }


def queue_overhead(base: str, headers: dict, jobs: int) -> dict:
    """Sequential jobs after one warm-up job (which waits for the worker to start), so none waits in line."""
    overheads = []
    with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
        for i in range(-1, jobs):
            job = http.post("/generate", json={"prompt": f"overhead {i}", **SMALL}).json()
            while (job := http.get(f"/jobs/{job['id']}").json())["state"] not in ("succeeded", "failed"):
                time.sleep(0.02)
            assert job["state"] == "succeeded", job["error"]
            if i >= 0:
                overheads.append(1000 * (job["timings"]["total_s"] - job["timings"]["pipeline_s"]))
    return {"jobs": jobs, "median_ms": round(statistics.median(overheads), 1), "max_ms": round(max(overheads), 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--jobs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        redis_port = free_port()
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        env = service_env(redis_url, tmp)
        processes = [start_redis_server(redis_port)]
        try:
            db = redis.Redis.from_url(redis_url)
            headers = {"X-API-Key": create_key(db, "bench")}
            ours, bare = free_port(), free_port()
            processes.append(uvicorn("api.app:create_app", ours, env))
            processes.append(uvicorn("benchmarks.bare_app:app", bare, env))
            base = f"http://127.0.0.1:{ours}"
            job = httpx.post(f"{base}/generate", json={"prompt": "probe", **SMALL}, headers=headers).json()
            bare_result = asyncio.run(
                load(f"http://127.0.0.1:{bare}/ping", "GET", args.clients, args.seconds, {}, None)
            )
            post = asyncio.run(
                load(f"{base}/generate", "POST", args.clients, args.seconds, headers, {"prompt": "load", **SMALL})
            )
            get = asyncio.run(load(f"{base}/jobs/{job['id']}", "GET", args.clients, args.seconds, headers, None))
            db.delete("gen.tiny")  # the load's jobs are not run; the overhead jobs below are
            worker = worker_command(["gen.tiny"], 1)
            processes.append(
                subprocess.Popen(worker, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
            overhead = queue_overhead(base, headers, args.jobs)
        finally:
            for process in reversed(processes):
                process.terminate()
                process.wait(timeout=30)
    print(
        json.dumps(
            {
                "clients": args.clients,
                "seconds_per_run": args.seconds,
                "bare_fastapi_one_redis_round_trip": bare_result,
                "post_generate": post,
                "get_job": get,
                "ratio_to_bare": {"post_generate": ratio(post, bare_result), "get_job": ratio(get, bare_result)},
                "goal_ratio": 0.5,
                "queue_overhead": overhead,
                "goal_queue_overhead_ms": 150,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
