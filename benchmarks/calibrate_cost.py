"""Seconds per cost unit (frame x pixel x step, x2 with guidance) of a model on this machine's device: the figure
core/cost.py uses to refuse requests that cannot finish within the time limit (DVD360_COST_S_PER_UNIT).

Runs the pipeline at a few sizes after one warm-up and prints JSON with each run's seconds per unit and the largest
one (the conservative figure to configure). Default: the tiny model on CPU, small sizes (under a minute). On a
shared, busy machine wall time measures the other tenants: `cpu_s_per_unit` (this process's CPU seconds over the
torch threads it runs) is what the same run takes on a machine of its own.

    PYTHONPATH=. .venv/bin/python benchmarks/calibrate_cost.py [--device cuda] [--models REGISTRY --model NAME]
"""

from __future__ import annotations

import argparse
import json
import time

from core.cost import OVERHEAD_S, units
from core.request import GenerationRequest

SIZES = [(8, 64, 128, 2), (8, 64, 128, 4), (4, 128, 256, 2)]  # frames, height, width, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", default=None, help="model registry YAML (default: the built-in tiny model)")
    parser.add_argument("--model", default="tiny")
    args = parser.parse_args()
    import torch

    from models.loading import load_pipeline
    from models.registry import load_registry

    spec = load_registry(args.models).get(args.model)
    pipe = load_pipeline(spec, device=args.device)
    pipe("warm-up", num_frames=2, height=64, width=128, num_inference_steps=1, seed=0)
    runs = []
    for frames, height, width, steps in SIZES:
        params = {"num_frames": frames, "height": height, "width": width, "steps": steps, "guidance_scale": 7.5}
        request = GenerationRequest(prompt="calibration", base_model=args.model, **params).resolve(spec)
        started, cpu_started = time.perf_counter(), time.process_time()
        video = pipe("calibration", num_frames=frames, height=height, width=width, num_inference_steps=steps,
                     guidance_scale=7.5, seed=0)  # fmt: skip
        for _ in video.chunks():  # frames are decoded on demand: the worker pays for it too
            pass
        seconds, cpu = time.perf_counter() - started, (time.process_time() - cpu_started) / torch.get_num_threads()
        runs.append({**params, "seconds": round(seconds, 3), "s_per_unit": seconds / units(request, spec),
                     "cpu_s_per_unit": cpu / units(request, spec)})  # fmt: skip
    print(json.dumps({"model": args.model, "device": args.device, "overhead_s_assumed": OVERHEAD_S, "runs": runs,
                      "s_per_unit_max": max(r["s_per_unit"] for r in runs),
                      "cpu_s_per_unit_max": max(r["cpu_s_per_unit"] for r in runs)}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
