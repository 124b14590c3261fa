"""Long and looping videos (issue 16): memory and time per length, window seams, loop closure. Prints JSON.

    python benchmarks/bench_long.py                             # tiny model, CPU, 64 x 128, 2 steps (~1-2 min)
    python benchmarks/bench_long.py --device cuda --size full   # SD-1.5-size random weights, 512 x 1024, 25 steps

Every run (16, 64 and 128 frames, then a loop) is a fresh child process, so each peak is that length's own.
Memory is the process's peak RSS during the pipeline call (VmHWM, reset after the model is built; plus the CUDA
allocator's peak on a GPU), before any frame is decoded: decoded frames are streamed to the encoder in the
service, so they are not part of the generation's memory; here they are decoded a chunk at a time, reduced to
small uint8 frames for the metrics. The issue's targets: peak at 64 and 128 frames <= 1.25 x the 16-frame run,
128-frame time <= 1.1 x 8 x the 16-frame time, window_seam_ratio <= 1.2, loop_closure <= 1.2 with --loop.
Times are the fastest of `--repeats` calls per process (other load on a shared machine only adds time).
Not a test: it reports numbers and whether each target is met.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LENGTHS = (16, 64, 128)


def _vm_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def run_one(args: argparse.Namespace) -> dict:
    """One generation in this process: peak memory, time, the frames' scores."""
    import cv2
    import numpy as np
    import torch

    from benchmarks.bench_model import build_components
    from models.media.evaluate import evaluate_frames
    from models.pipeline import Panorama360Pipeline

    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = Panorama360Pipeline.from_components(**build_components(args.size), device=args.device)
    pipe.max_frames = max(LENGTHS)
    cuda = pipe.device.type == "cuda"
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM: the model's own build peak is not the call's
    rss_before = _vm_kib("VmRSS")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.repeats):  # the fastest of a few: a shared machine's other load only ever adds time
        started = time.perf_counter()
        video = pipe(
            "a quiet lake at dawn",
            num_frames=args.frames,
            height=args.height,
            width=2 * args.height,
            num_inference_steps=args.steps,
            guidance_scale=args.guidance,
            seed=0,
            loop=args.loop,
        )
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    generate_s = min(times)
    peak_kib = _vm_kib("VmHWM")
    cuda_peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    small = (2 * min(args.height, 128), min(args.height, 128))  # cv2 sizes are (width, height)
    frames = [
        cv2.resize(np.asarray(f * 255, np.uint8), small, interpolation=cv2.INTER_AREA)
        for chunk in video.chunks()
        for f in chunk
    ]
    decode_s = time.perf_counter() - started - times[-1]
    scores = evaluate_frames(np.stack(frames).astype(np.float32) / 255, pipe.context_windows.length)
    return {
        "frames": args.frames,
        "loop": args.loop,
        "generate_s": round(generate_s, 2),
        "decode_s": round(decode_s, 2),
        "peak_rss_mb": round(peak_kib / 1024, 1),
        "rss_growth_mb": round((peak_kib - rss_before) / 1024, 1),
        "cuda_peak_mb": None if cuda_peak is None else round(cuda_peak, 1),
        "window_seam_ratio": scores["window_seam_ratio"],
        "loop_closure": scores["loop_closure"],
    }


def child(args: argparse.Namespace, frames: int, loop: bool) -> dict:
    command = [sys.executable, __file__, "--child", "--frames", str(frames), "--size", args.size]
    command += ["--height", str(args.height), "--steps", str(args.steps), "--guidance", str(args.guidance)]
    command += ["--threads", str(args.threads), "--repeats", str(args.repeats)]
    command += ["--device", args.device] if args.device else []
    command += ["--loop"] if loop else []
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["tiny", "full"], default="tiny")
    parser.add_argument("--device", default=None, help="cpu, cuda ... (default: the pipeline's choice)")
    parser.add_argument("--height", type=int, default=None, help="default 64 (tiny) or 512 (full); width is 2x")
    parser.add_argument("--steps", type=int, default=None, help="default 2 (tiny) or 25 (full)")
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--loop-frames", type=int, default=32, help="length of the loop run")
    parser.add_argument("--repeats", type=int, default=2, help="calls per length; the fastest is the time")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads for torch (1: comparable times on a shared machine; 0: default)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--frames", type=int, default=16, help=argparse.SUPPRESS)
    parser.add_argument("--loop", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    full = args.size == "full"
    args.height = args.height or (512 if full else 64)
    args.steps = args.steps or (25 if full else 2)
    if args.child:
        print(json.dumps(run_one(args)))
        return
    runs = {n: child(args, n, loop=False) for n in LENGTHS}
    looped = child(args, args.loop_frames, loop=True)
    base, longest = runs[LENGTHS[0]], runs[LENGTHS[-1]]
    scale = LENGTHS[-1] / LENGTHS[0]

    def peak(run: dict) -> float:
        return run["cuda_peak_mb"] or run["peak_rss_mb"]

    ratios = {
        "peak_64_over_16": round(peak(runs[64]) / peak(base), 3),
        "peak_128_over_16": round(peak(longest) / peak(base), 3),
        "time_128_over_8x16": round(longest["generate_s"] / (scale * base["generate_s"]), 3),
        "window_seam_ratio_128": longest["window_seam_ratio"],
        "loop_closure_loop": looped["loop_closure"],
        "loop_closure_no_loop": longest["loop_closure"],
    }
    targets = {
        "memory_flat": max(ratios["peak_64_over_16"], ratios["peak_128_over_16"]) <= 1.25,
        "time_linear": ratios["time_128_over_8x16"] <= 1.1,
        "no_window_seams": ratios["window_seam_ratio_128"] <= 1.2,
        "loop_closes": ratios["loop_closure_loop"] <= 1.2,
    }
    settings = {"size": args.size, "device": args.device, "height": args.height, "steps": args.steps}
    settings |= {"guidance": args.guidance, "threads": args.threads, "repeats": args.repeats}
    print(json.dumps({"settings": settings, "runs": [*runs.values(), looped], "ratios": ratios, "targets": targets}))


if __name__ == "__main__":
    main()
