"""The project beside an independent reference on the same work, at the full-size architecture. Prints a table.

    python benchmarks/bench_vs_reference.py                    # 2 interleaved pairs, 8 x 128 x 256, 2 steps, CPU
    python benchmarks/bench_vs_reference.py --pairs 6 --json   # more pairs; the raw runs as JSON too

Weights: SD-1.5 UNet + VAE + CLIP text encoder, mm_sd_v14 motion module and the full 360-Adapter, random, written
once in the PUBLISHED formats (a diffusers SD-1.5 folder, the original AnimateDiff `.ckpt`, the adapter's `.ckpt`)
under --weights. Each side loads them through its own loaders in a fresh process; the sides alternate (A B A B)
so a busy machine slows both alike:
- project: `models.loading.load_pipeline` and `Panorama360Pipeline` (adapter, rotation, circular padding on);
- reference: diffusers' `AnimateDiffPipeline` over the same UNet and motion weights (diffusers' own
  `from_pretrained` / `MotionAdapter.from_single_file`), decoding frame by frame as the authors' script does.
  It has no 360-Adapter, so the project does slightly more work.
Call time is the pipeline call plus decoding every frame. Peak RSS is the child's max RSS (load + call), shown
beside the bytes of the weights in use. Not a test: it measures, it asserts nothing.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPT = "a volcano erupting at sunset, 360 panorama"
SIDES = ("project", "reference")


def write_weights(folder: Path) -> None:
    """Random full-size weights in the published layouts (several GB; written once, reused)."""
    from benchmarks.bench_model import build_components
    from tests.models.published_layouts import adapter_checkpoint, motion_checkpoint, sd15_folder

    parts = build_components("full")
    folder.mkdir(parents=True, exist_ok=True)
    sd15_folder(parts, folder / "sd15")
    adapter_checkpoint(parts.pop("adapter"), folder / "360Adapter_flow_v1.ckpt", wrapped=True, module_prefix=True)
    motion_checkpoint(parts.pop("motion_adapter"), folder / "mm_sd_v14.ckpt", wrapped=False)
    (folder / "done").write_text("ok")


def weight_gb(modules) -> float:
    tensors = [t for m in modules for t in (*m.parameters(), *m.buffers())]
    return sum(t.numel() * t.element_size() for t in tensors) / 1e9


def timed(fn, stages: dict, name: str):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        stages[name] = round(stages.get(name, 0) + time.perf_counter() - start, 3)
        return result

    return wrapper


def run_project(args: argparse.Namespace, stages: dict, stamps: list) -> tuple[float, float, list]:
    from models.loading import load_pipeline
    from models.registry import ModelSpec

    start = time.perf_counter()
    spec = ModelSpec(
        name="bench",
        sd15=args.weights / "sd15",
        motion_module=args.weights / "mm_sd_v14.ckpt",
        adapter=args.weights / "360Adapter_flow_v1.ckpt",
    )
    pipe = load_pipeline(spec, device="cpu")
    load_s = time.perf_counter() - start
    pipe.encode_prompt = timed(pipe.encode_prompt, stages, "text")
    pipe.encode_flow = timed(pipe.encode_flow, stages, "adapter")
    start = time.perf_counter()
    stamps.append(start)
    video = pipe(
        PROMPT,
        num_frames=args.frames,
        height=args.height,
        width=2 * args.height,
        num_inference_steps=args.steps,
        guidance_scale=7.5,
        seed=0,
        progress=lambda i, n: stamps.append(time.perf_counter()),
    )
    decode_start = time.perf_counter()
    for _ in video.chunks():
        pass
    stages["decode"] = round(time.perf_counter() - decode_start, 3)
    return load_s, time.perf_counter() - start, [pipe.vae, pipe.text_encoder, pipe.unet, pipe.adapter]


def run_reference(args: argparse.Namespace, stages: dict, stamps: list) -> tuple[float, float, list]:
    import torch
    from diffusers import AnimateDiffPipeline, AutoencoderKL, MotionAdapter, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from models.scheduler import animatediff_ddim_scheduler

    start = time.perf_counter()
    sd15 = args.weights / "sd15"
    # from_single_file reads the original AnimateDiff layout; its config comes from a local folder (offline)
    config_dir = args.weights / "mm_config"
    config_dir.mkdir(exist_ok=True)
    (config_dir / "config.json").write_text((args.weights / "mm_sd_v14.json").read_text())
    motion = MotionAdapter.from_single_file(
        str(args.weights / "mm_sd_v14.ckpt"), config=str(config_dir), local_files_only=True
    )
    pipe = AnimateDiffPipeline(
        vae=AutoencoderKL.from_pretrained(sd15 / "vae", local_files_only=True),
        text_encoder=CLIPTextModel.from_pretrained(sd15 / "text_encoder", local_files_only=True),
        tokenizer=CLIPTokenizer.from_pretrained(sd15 / "tokenizer", local_files_only=True),
        unet=UNet2DConditionModel.from_pretrained(sd15 / "unet", local_files_only=True),
        motion_adapter=motion,
        scheduler=animatediff_ddim_scheduler(),
    )
    pipe.set_progress_bar_config(disable=True)
    load_s = time.perf_counter() - start
    pipe.encode_prompt = timed(pipe.encode_prompt, stages, "text")
    pipe.decode_latents = timed(pipe.decode_latents, stages, "decode")
    start = time.perf_counter()
    stamps.append(start)
    pipe(
        PROMPT,
        negative_prompt="",
        num_frames=args.frames,
        height=args.height,
        width=2 * args.height,
        num_inference_steps=args.steps,
        guidance_scale=7.5,
        generator=torch.Generator("cpu").manual_seed(0),
        output_type="np",
        decode_chunk_size=1,  # the authors decode frame by frame
        callback_on_step_end=lambda p, i, t, kw: (stamps.append(time.perf_counter()), kw)[1],
    )
    return load_s, time.perf_counter() - start, [pipe.vae, pipe.text_encoder, pipe.unet]


def run_side(args: argparse.Namespace) -> dict:
    """Child process: load, one call, per-stage times."""
    import torch

    torch.manual_seed(0)
    stages: dict = {}
    stamps: list[float] = []
    runner = run_project if args.side == "project" else run_reference
    load_s, call_s, modules = runner(args, stages, stamps)
    # stamps: the call's start, then each step's end; the first step also holds the text and adapter stages
    steps = [b - a for a, b in itertools.pairwise(stamps)]
    steps[0] -= stages.get("text", 0) + stages.get("adapter", 0)
    return {
        "side": args.side,
        "load_s": round(load_s, 2),
        "call_s": round(call_s, 2),
        "stages_s": {**stages, "steps": [round(s, 2) for s in steps]},
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
        "weights_gb": round(weight_gb(modules), 2),
        "torch_threads": torch.get_num_threads(),
    }


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} [{min(values):.3f}-{max(values):.3f}]"


def report(runs: list[dict]) -> str:
    by_side = {side: [r for r in runs if r["side"] == side] for side in SIDES}
    lines = [f"{'':22}{'project':>26}{'reference':>26}   (median [min-max])"]
    for label, key in (("load s", "load_s"), ("call s", "call_s"), ("peak RSS GB", "peak_rss_gb")):
        cells = [spread([r[key] for r in by_side[s]]) for s in SIDES]
        lines.append(f"{label:22}{cells[0]:>26}{cells[1]:>26}")
    for stage in ("text", "adapter", "decode"):
        cells = [spread([r["stages_s"].get(stage, 0) for r in by_side[s]]) for s in SIDES]
        lines.append(f"{stage + ' s':22}{cells[0]:>26}{cells[1]:>26}")
    for i in range(len(by_side["project"][0]["stages_s"]["steps"])):
        cells = [spread([r["stages_s"]["steps"][i] for r in by_side[s]]) for s in SIDES]
        lines.append(f"{f'UNet step {i + 1} s':22}{cells[0]:>26}{cells[1]:>26}")
    weights = by_side["project"][0]["weights_gb"]
    lines.append(f"{'weights in use GB':22}{weights:>26}{by_side['reference'][0]['weights_gb']:>26}")
    pairs = list(zip(by_side["project"], by_side["reference"], strict=True))
    lines.append("project / reference per pair, median [min-max]:")
    for label, key in (("call", "call_s"), ("load", "load_s"), ("peak RSS", "peak_rss_gb")):
        lines.append(f"  {label:24}{spread([p[key] / r[key] for p, r in pairs])}")
    ratios = spread([p["peak_rss_gb"] / p["weights_gb"] for p, _ in pairs])
    lines.append(f"  {'project RSS / weights':24}{ratios}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=Path("/tmp/dvd360-bench-full"))
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="also print every run as JSON")
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--write", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write:
        return write_weights(args.weights)
    if args.side:
        return print(json.dumps(run_side(args)))
    if not (args.weights / "done").exists():
        print(f"writing full-size random weights to {args.weights} (once)", file=sys.stderr)
        subprocess.run([sys.executable, __file__, "--write", "--weights", str(args.weights)], check=True)
    shape = ["--frames", str(args.frames), "--height", str(args.height), "--steps", str(args.steps)]
    # both sides wait the same way (the project's `models` package sets PASSIVE; the reference never imports it)
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    runs = []
    for pair in range(args.pairs):
        for side in reversed(SIDES):  # the reference first: its loaders are the likelier to fail
            cmd = [sys.executable, __file__, "--side", side, "--weights", str(args.weights), *shape]
            child = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if child.returncode:
                sys.exit(f"{side} run failed:\n{child.stderr[-3000:]}")
            runs.append(json.loads(child.stdout.strip().splitlines()[-1]))
            print(f"pair {pair + 1}: {json.dumps(runs[-1])}", file=sys.stderr)
    print(f"{args.frames} frames x {args.height}x{2 * args.height}, {args.steps} steps, CFG 7.5, fp32, CPU")
    print(report(runs))
    if args.json:
        print(json.dumps(runs, indent=2))


if __name__ == "__main__":
    main()
