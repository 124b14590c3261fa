"""Live job events on this machine, printed as JSON (not a test).

1. Streams: real processes (redis-server, our API under uvicorn with auth off, a Celery worker with the tiny model).
   `--streams` event streams (GET /jobs/{id}/events from the first event) stay open over `--jobs` running jobs while
   a prober times GET /healthz every 20 ms; reported: healthz p50/p99 (goal p99 < 100 ms), streams that saw their
   job's final event, and the Redis connections the API held (one shared reader, not one per stream).
2. Preview overhead: the pipeline's time per denoising step with previews off and on (every step, and every
   DVD360_PREVIEW_EVERY's default), the preview itself timed as the worker runs it (x0 -> JPEG -> base64 -> XADD to
   Redis); goal: under 2 % of a step on the tiny model on CPU. `--size full` uses SD-1.5-size random weights
   (16 x 512 x 1024 on CUDA).

Run: PYTHONPATH=. .venv/bin/python benchmarks/bench_events.py [--streams 200] [--jobs 4] [--size tiny|full]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import redis

from benchmarks.bench_service import service_env, uvicorn
from cli.redis_server import start_redis_server
from cli.serve import free_port, worker_command
from cli.submit import sse_events

ROOT = Path(__file__).resolve().parents[1]
JOB = {"prompt": "a volcano", "num_frames": 8, "height": 64, "width": 128, "steps": 12}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def hold_streams(base: str, job_ids: list[str], streams: int) -> dict:
    """`streams` open event streams spread over the jobs, while /healthz is probed; until every stream ends."""
    finals: list[bool] = []
    probes: list[float] = []
    opened = asyncio.Event()
    open_count = 0

    async def stream(http: httpx.AsyncClient, job_id: str) -> None:
        nonlocal open_count
        url = f"{base}/jobs/{job_id}/events"
        async with http.stream("GET", url, headers={"Last-Event-ID": "0"}) as answer:
            open_count += 1
            if open_count == streams:
                opened.set()
            lines = []
            async for line in answer.aiter_lines():
                lines.append(line)
            kinds = [kind for _, kind, _ in sse_events(iter(lines))]
            finals.append(bool(kinds) and kinds[-1] in ("succeeded", "failed", "canceled"))

    async def probe(http: httpx.AsyncClient, done: asyncio.Event) -> None:
        while not done.is_set():
            start = time.perf_counter()
            assert (await http.get(f"{base}/healthz")).status_code == 200
            probes.append(time.perf_counter() - start)
            await asyncio.sleep(0.02)

    limits = httpx.Limits(max_connections=streams + 10, max_keepalive_connections=streams + 10)
    async with (
        httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(30, read=300)) as streams_http,
        httpx.AsyncClient(timeout=30) as probe_http,
    ):
        done = asyncio.Event()
        prober = asyncio.create_task(probe(probe_http, done))
        readers = [asyncio.create_task(stream(streams_http, job_ids[i % len(job_ids)])) for i in range(streams)]
        await asyncio.wait_for(opened.wait(), 120)
        all_open_at = time.perf_counter()
        await asyncio.gather(*readers)
        done.set()
        await prober
    return {
        "streams": streams,
        "streams_with_final_event": sum(finals),
        "held_open_s": round(time.perf_counter() - all_open_at, 1),
        "healthz_probes": len(probes),
        "healthz_p50_ms": round(1000 * percentile(probes, 0.5), 1),
        "healthz_p99_ms": round(1000 * percentile(probes, 0.99), 1),
    }


def streams_benchmark(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        redis_port = free_port()
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        env = service_env(redis_url, tmp, DVD360_AUTH="false")
        processes = [start_redis_server(redis_port)]
        try:
            db = redis.Redis.from_url(redis_url)
            port = free_port()
            processes.append(uvicorn("api.app:create_app", port, env))
            processes.append(
                subprocess.Popen(
                    worker_command(["gen.tiny", "webhooks"], 1),
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            base = f"http://127.0.0.1:{port}"
            job_ids = [httpx.post(f"{base}/generate", json=JOB, timeout=30).json()["id"] for _ in range(args.jobs)]
            before = len(db.client_list())
            result = asyncio.run(hold_streams(base, job_ids, args.streams))
            result["redis_clients_before_streams"] = before
            result["redis_clients_after_streams"] = len(db.client_list())
            return result
        finally:
            for process in reversed(processes):
                process.terminate()
                process.wait(timeout=30)


def preview_overhead(args: argparse.Namespace) -> dict:
    """Median time per step with previews off, every step and every default-N steps, and the preview's own cost."""
    import torch

    from benchmarks.bench_model import build_components
    from core.jobs import JobStore
    from core.settings import Settings
    from models.pipeline import Panorama360Pipeline
    from worker.live_preview import preview_publisher

    full = args.size == "full"
    shape = {"num_frames": 16 if full else 8, "height": 512 if full else 64, "width": 1024 if full else 128}
    steps = args.steps or (25 if full else 8)
    pipe = Panorama360Pipeline.from_components(**build_components(args.size), device=args.device)
    default_every = Settings.model_fields["preview_every"].default
    redis_port = free_port()
    server = start_redis_server(redis_port)
    try:
        store = JobStore(redis.Redis(port=redis_port), 3600)
        publish = preview_publisher(store, "bench", 1)
        preview_s: list[float] = []

        def timed_preview(every: int):
            def preview(step: int, total: int, x0: torch.Tensor) -> None:
                if step % every == 0:
                    start = time.perf_counter()
                    publish(step, total, x0)
                    preview_s.append(time.perf_counter() - start)

            return preview

        def step_s(preview) -> float:
            stamps: list[float] = []
            start = time.perf_counter()
            pipe("a volcano", seed=0, num_inference_steps=steps, progress=lambda i, n: stamps.append(
                time.perf_counter()), preview=preview, **shape)  # fmt: skip
            if pipe.device.type == "cuda":
                torch.cuda.synchronize()
            return statistics.median(b - a for a, b in zip([start, *stamps[:-1]], stamps, strict=True))

        step_s(None)  # warm-up
        runs: dict[str, list[float]] = {"off": [], "every_step": [], f"every_{default_every}": []}
        for _ in range(args.repeats):  # interleaved, so a busy neighbour slows all three alike
            runs["off"].append(step_s(None))
            runs["every_step"].append(step_s(timed_preview(1)))
            runs[f"every_{default_every}"].append(step_s(timed_preview(default_every)))
    finally:
        server.terminate()
    step_ms = {name: round(1000 * statistics.median(values), 2) for name, values in runs.items()}
    preview_ms = 1000 * statistics.median(preview_s)
    return {
        "size": args.size,
        "device": str(pipe.device),
        "video": f"{shape['num_frames']}x{shape['height']}x{shape['width']}",
        "step_ms": step_ms,
        "preview_ms": round(preview_ms, 2),
        "overhead_pct_every_step": round(100 * preview_ms / step_ms["off"], 2),
        f"overhead_pct_every_{default_every}": round(100 * preview_ms / default_every / step_ms["off"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--size", choices=["tiny", "full"], default="tiny")
    parser.add_argument("--device", default=None)
    parser.add_argument("--steps", type=int, help="Denoising steps per run (default: 8 tiny, 25 full).")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-streams", action="store_true", help="Only the preview overhead (e.g. on a GPU box).")
    parser.add_argument("--skip-preview", action="store_true", help="Only the streams.")
    args = parser.parse_args()
    results = {}
    if not args.skip_preview:
        results["preview"] = preview_overhead(args)
    if not args.skip_streams:
        results["streams"] = streams_benchmark(args)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
