"""Solver convergence (issue 27): how close each solver gets to the 100-step DDIM solution in few steps.

    python benchmarks/bench_solvers.py                             # tiny model, CPU, 8 x 64 x 128 (~2 min)
    python benchmarks/bench_solvers.py --size full --frames 4      # SD-1.5-size random weights, 4 x 64 x 128
    python benchmarks/bench_solvers.py --steps 5,10,25,50,100      # other step counts; --json: JSON

For every solver (`models.solvers`) and step count: the relative L2 error ||x - x_ref|| / ||x_ref|| of the final
latents against `--reference-steps` DDIM steps from the same noise, with the default enhancements (latent
rotation, rolled features, circular padding from half-way), and the fastest step's seconds (every solver calls
the UNet once per step; a shared machine's other load only adds time). Random weights
(seeded), so the numbers measure the solvers on the real architecture, not picture quality. The issue's goal:
dpmpp_2m at 10 steps no worse than DDIM at 25. Not a test: it reports numbers, it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_STEPS = (5, 8, 10, 15, 25)


def measure(args: argparse.Namespace) -> dict:
    import torch

    from benchmarks.bench_model import build_components
    from models.generation_params import SOLVERS
    from models.pipeline import Panorama360Pipeline

    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = Panorama360Pipeline.from_components(**build_components(args.size), device=args.device)

    def run(solver: str, steps: int):
        video = pipe(
            "a quiet lake at dawn",
            num_frames=args.frames,
            height=args.height,
            width=2 * args.height,
            num_inference_steps=steps,
            guidance_scale=args.guidance,
            seed=args.seed,
            scheduler=solver,
        )
        return video.latents.double().cpu(), video.step_seconds

    started = time.perf_counter()
    reference, _ = run("ddim", args.reference_steps)
    errors: dict[str, dict[int, float]] = {}
    step_s: dict[str, float] = {}
    for solver in args.solvers or SOLVERS:
        errors[solver], times = {}, []
        for steps in args.steps:
            latents, seconds = run(solver, steps)
            errors[solver][steps] = round(float((latents - reference).norm() / reference.norm()), 4)
            times += seconds
            print(f"{solver} {steps}: {errors[solver][steps]}", file=sys.stderr, flush=True)
        step_s[solver] = round(min(times), 4)
    return {
        "size": args.size,
        "shape": {"frames": args.frames, "height": args.height, "width": 2 * args.height},
        "device": str(pipe.device),
        "seed": args.seed,
        "guidance_scale": args.guidance,
        "reference": f"ddim, {args.reference_steps} steps",
        "relative_l2_error": errors,
        "s_per_step": step_s,
        "total_s": round(time.perf_counter() - started, 1),
    }


def table(result: dict) -> str:
    """A markdown table: one row per solver, one column per step count, and the fastest step's time."""
    errors = result["relative_l2_error"]
    steps = list(next(iter(errors.values())))
    lines = [
        "| solver | " + " | ".join(f"{n} steps" for n in steps) + " | fastest step (s) |",
        "|---" * (len(steps) + 2) + "|",
    ]
    for solver, row in errors.items():
        cells = " | ".join(f"{row[n]:.4f}" for n in steps)
        lines.append(f"| {solver} | {cells} | {result['s_per_step'][solver]:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["tiny", "full"], default="tiny")
    parser.add_argument("--device", default=None)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--steps", type=lambda s: [int(n) for n in s.split(",")], default=list(DEFAULT_STEPS))
    parser.add_argument("--reference-steps", type=int, default=100)
    parser.add_argument("--solvers", type=lambda s: s.split(","), default=None, help="comma-separated (default: all)")
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args()
    result = measure(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['size']} model, {result['shape']}, {result['device']}, against {result['reference']}:")
        print(table(result))


if __name__ == "__main__":
    main()
