"""High-resolution outputs (issue 26): spatial windows and the two-stage refine against the native size. JSON.

    python benchmarks/bench_highres.py                     # CPU, full-size architecture, 8 x 256x512 in 128x256
                                                           # windows against 128x256 whole (2 rounds, ~25 min)
    python benchmarks/bench_highres.py --gpu               # CUDA, fp16: 1024x2048 and 2048x4096, 16 frames, 25
                                                           # steps, native 512x1024 windows, refined and plain
    python benchmarks/bench_highres.py --gpu --model tiny --device cpu --heights 128 256 --frames 2 --steps 2
                                                           # the GPU mode's code path at a tiny size, on a CPU

CPU mode: random full-size weights (SD-1.5 UNet + VAE + CLIP, mm_sd_v14, the full 360-Adapter), written once in
the PUBLISHED formats under --weights (shared with bench_vs_reference.py) and loaded by `models.loading`, so the
model is the real one's shape. Each run is a fresh process; the variants alternate within each round (whole,
windows, refine, ...) so a busy machine slows them alike. Variants: `whole` (128x256, one UNet call per step),
`windows` (256x512 in 128x256 windows from noise, `refine=False`), `refine` (the default above the window: the
128x256 pass, upscaled, the last half of the schedule in windows), and with --overlap also `overlap` (windows
overlapping by that many pixels). Per run: the call (denoise + decode + scores) time, the process's peak RSS (load
+ call) and the call's own growth, and the quality figures of the frames as streamed. Ratios to `whole`: time per
output pixel, peak RSS; and each variant's composition figure (latents and pixels averaged to 4 x 8 blocks,
against the `whole` run of the same seed, which is also the refine's first stage; over what another seed's
`whole` run scores). Issue goals: peak RSS ratio <= 1.25, time per output pixel <= 1.3x, window seam ratio <= 1.2.

GPU mode: for each height and variant (refine, windows) a fresh process: the call's time (denoise, decode) and
the CUDA allocator's peak (goal: 2048x4096 within 24 GB). Weights are random, built in memory (the architecture
is what costs). Not a test: it measures, it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPT = "a volcano erupting at sunset, 360 panorama"
CPU_VARIANTS = ("whole", "windows", "refine")


def _vm_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def load(args: argparse.Namespace):
    """The pipeline: the published-format files through the project's loader, or random weights in memory."""
    if args.weights is not None:
        from models.loading import load_pipeline
        from models.registry import ModelSpec

        spec = ModelSpec(
            name="bench",
            sd15=args.weights / "sd15",
            motion_module=args.weights / "mm_sd_v14.ckpt",
            adapter=args.weights / "360Adapter_flow_v1.ckpt",
        )
        return load_pipeline(spec, device=args.device)
    import torch

    from benchmarks.bench_model import build_components
    from models.pipeline import Panorama360Pipeline

    dtype = torch.float16 if args.device == "cuda" else None
    return Panorama360Pipeline.from_components(**build_components(args.model), device=args.device, dtype=dtype)


def run_child(args: argparse.Namespace) -> dict:
    """One generation in this process: times, memory, the streamed frames' scores; latents and small frames saved
    under --out for the composition figure."""
    import numpy as np
    import torch

    from models.media.evaluate import VideoScores

    started = time.perf_counter()
    pipe = load(args)
    load_s = time.perf_counter() - started
    if args.overlap:
        pipe.spatial_overlap = args.overlap
    cuda = pipe.device.type == "cuda"
    load_peak = _vm_kib("VmHWM")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM from here on: the call's own peak
    rss_before = _vm_kib("VmRSS")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    window = None if args.window is None else tuple(args.window)
    job = {"num_frames": args.frames, "height": args.height, "width": 2 * args.height, "seed": args.seed}
    job |= {"num_inference_steps": args.steps, "guidance_scale": 7.5, "spatial_window": window}
    started = time.perf_counter()
    video = pipe(PROMPT, refine=args.variant != "windows", **job)
    if cuda:
        torch.cuda.synchronize()
    denoise_s = time.perf_counter() - started
    scores = VideoScores(pipe.context_windows.length, video.spatial_windows)
    small = []
    for chunk in scores.passing(video.chunks()):
        small.append(chunk[:, :: max(1, args.height // 128), :: max(1, args.height // 128)])
    call_s = time.perf_counter() - started
    call_peak = _vm_kib("VmHWM")
    if args.out is not None:
        latents = video.latents[0].float().cpu().permute(1, 2, 3, 0).numpy()  # channels-last, as the figure reads
        np.savez(args.out, latents=latents, frames=np.concatenate(small))
    return {
        "variant": args.variant,
        "size": [args.height, 2 * args.height],
        "frames": args.frames,
        "load_s": round(load_s, 2),
        "denoise_s": round(denoise_s, 2),
        "decode_and_score_s": round(call_s - denoise_s, 2),
        "call_s": round(call_s, 2),
        "s_per_megapixel_frame": round(call_s / (args.frames * 2 * args.height**2 / 1e6), 3),
        "peak_rss_gb": round(max(load_peak, call_peak) / 2**20, 3),  # load + call
        "call_rss_growth_gb": round((call_peak - rss_before) / 2**20, 3),
        "cuda_peak_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "cuda_reserved_gb": round(torch.cuda.max_memory_reserved() / 2**30, 2) if cuda else None,
        "device": str(pipe.device),
        "dtype": str(pipe.dtype).removeprefix("torch."),
        "torch_threads": torch.get_num_threads(),
        "scores": scores.result(),
    }


def child(args: argparse.Namespace, variant: str, height: int, seed: int = 0, out: Path | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", variant, "--height", str(height), "--seed", str(seed)]
    cmd += ["--frames", str(args.frames), "--steps", str(args.steps), "--model", args.model]
    cmd += ["--overlap", str(args.overlap if variant == "overlap" else 0)]
    cmd += ["--device", args.device] if args.device else []
    cmd += ["--weights", str(args.weights)] if args.weights else []
    cmd += ["--window", *map(str, args.window)] if args.window else []
    cmd += ["--out", str(out)] if out else []
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        sys.exit(f"{variant} at {height} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(result), file=sys.stderr)
    return result


def spread(values: list[float]) -> list[float]:
    return [round(statistics.median(values), 3), round(min(values), 3), round(max(values), 3)]


def cpu_mode(args: argparse.Namespace) -> dict:
    import numpy as np

    from models.media.evaluate import composition_difference

    if not (args.weights / "done").exists():
        print(f"writing full-size random weights to {args.weights} (once)", file=sys.stderr)
        cmd = [sys.executable, str(Path(__file__).with_name("bench_vs_reference.py")), "--write"]
        subprocess.run([*cmd, "--weights", str(args.weights)], check=True)
    variants = (*CPU_VARIANTS, "overlap") if args.overlap else CPU_VARIANTS
    folder = Path(tempfile.mkdtemp(prefix="bench-highres-"))
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    composition: dict[str, list[dict]] = {v: [] for v in variants if v != "whole"}
    for round_ in range(args.rounds):
        saved = {}
        for variant in variants:
            height = args.height if variant == "whole" else 2 * args.height
            saved[variant] = folder / f"{variant}-{round_}.npz"
            runs[variant].append(child(args, variant, height, out=saved[variant]))
        if round_ == 0:  # what an unrelated composition scores (another seed), once
            saved["other"] = folder / "other.npz"
            child(args, "whole", args.height, seed=1, out=saved["other"])
            other = np.load(saved["other"])
        whole = np.load(saved["whole"])
        unrelated = {k: composition_difference(other[k], whole[k]) for k in ("latents", "frames")}
        for variant in composition:
            mine = np.load(saved[variant])
            composition[variant].append(
                {k: round(composition_difference(mine[k], whole[k]) / unrelated[k], 3) for k in unrelated}
            )

    def ratios(variant: str) -> dict:
        pairs = list(zip(runs[variant], runs["whole"], strict=True))
        return {
            "time_per_output_pixel": spread(
                [v["s_per_megapixel_frame"] / w["s_per_megapixel_frame"] for v, w in pairs]
            ),
            "peak_rss": spread([v["peak_rss_gb"] / w["peak_rss_gb"] for v, w in pairs]),
            "call_rss_growth": spread([v["call_rss_growth_gb"] / w["call_rss_growth_gb"] for v, w in pairs]),
            "window_seam_ratio": spread([v["scores"]["spatial_window_seam_ratio"] for v, _ in pairs]),
            "composition_latents_vs_other_seed": spread([c["latents"] for c in composition[variant]]),
            "composition_pixels_vs_other_seed": spread([c["frames"] for c in composition[variant]]),
        }

    summary = {v: ratios(v) for v in variants if v != "whole"}
    goals = {
        v: {
            "peak_rss_ratio_le_1.25": s["peak_rss"][0] <= 1.25,
            "time_per_pixel_le_1.3": s["time_per_output_pixel"][0] <= 1.3,
            "window_seam_ratio_le_1.2": s["window_seam_ratio"][0] <= 1.2,
        }
        for v, s in summary.items()
    }
    return {"ratios_to_whole_median_min_max": summary, "goals": goals, "runs": runs}


def gpu_mode(args: argparse.Namespace) -> dict:
    runs = [child(args, variant, height) for height in args.heights for variant in ("refine", "windows")]
    largest = [r for r in runs if r["size"] == [2048, 4096] and r["cuda_peak_gb"] is not None]
    return {"runs": runs, "within_24_gb_at_2048x4096": {r["variant"]: r["cuda_peak_gb"] <= 24 for r in largest}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu", action="store_true", help="the GPU mode (sizes --heights, default cuda, fp16)")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cpu; cuda with --gpu)")
    parser.add_argument("--model", choices=["full", "tiny"], default="full", help="architecture (GPU mode)")
    parser.add_argument("--weights", type=Path, default=None, help="CPU mode: published-format weights folder")
    parser.add_argument("--rounds", type=int, default=2, help="CPU mode: interleaved rounds of every variant")
    parser.add_argument("--height", type=int, default=None, help="CPU mode: the native height (output 2x)")
    parser.add_argument("--heights", type=int, nargs="+", default=[1024, 2048], help="GPU mode: output heights")
    parser.add_argument("--window", type=int, nargs=2, default=None, help="spatial window H W (default: see modes)")
    parser.add_argument("--overlap", type=int, default=0, help="CPU mode: also windows overlapping by this (px)")
    parser.add_argument("--frames", type=int, default=None, help="default 8 (CPU) or 16 (GPU)")
    parser.add_argument("--steps", type=int, default=None, help="default 2 (CPU) or 25 (GPU)")
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=[*CPU_VARIANTS, "overlap"], dest="variant", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        args.weights = args.weights if args.weights and args.weights.exists() else None
        return print(json.dumps(run_child(args)))
    args.device = args.device or ("cuda" if args.gpu else "cpu")
    args.frames = args.frames or (16 if args.gpu else 8)
    args.steps = args.steps or (25 if args.gpu else 2)
    if args.gpu:
        args.weights = None  # random weights built in memory
        result = {"mode": "gpu", **gpu_mode(args)}
    else:
        args.height = args.height or 128
        args.window = args.window or [args.height, 2 * args.height]
        args.weights = args.weights or Path("/tmp/dvd360-bench-full")
        result = {"mode": "cpu", **cpu_mode(args)}
    settings = {k: getattr(args, k) for k in ("device", "model", "frames", "steps", "window", "overlap", "rounds")}
    print(json.dumps({"settings": settings, **result}, indent=1, default=str))


if __name__ == "__main__":
    main()
