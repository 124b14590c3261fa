"""Model speed and memory, ours beside plain diffusers AnimateDiffPipeline on the same components. Prints JSON.

    python benchmarks/bench_model.py                 # tiny model, CPU, 16 x 64 x 128, 4 steps (target < 5 s)
    python benchmarks/bench_model.py --size full     # SD-1.5-size random weights; on CUDA 16 x 512 x 1024,
                                                     # 25 steps, fp16 (target < 8 s on one H100)

Each pipeline runs in its own child process so peak memory (CUDA allocator peak, else the process's max RSS)
belongs to that pipeline alone. Not a test: it reports numbers, it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGETS_S = {"tiny": 5.0, "full": 8.0}

SD15_UNET = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}
SD15_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}


def build_components(size: str) -> dict:
    from models.tiny import build_random_components, build_tiny_components

    if size == "tiny":
        return build_tiny_components()
    motion = json.loads((Path(__file__).parents[1] / "models/configs/mm_sd_v14.json").read_text())
    motion = {k: v for k, v in motion.items() if not k.startswith("_")}
    return build_random_components(SD15_UNET, motion, SD15_VAE, {}, text_layers=12, text_heads=12)


def peak_memory_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_variant(args: argparse.Namespace) -> dict:
    """Child process: build, warm up, then time one generation with per-step timestamps."""
    import torch
    from diffusers import AnimateDiffPipeline

    from models.devices import default_decode_chunk_size
    from models.pipeline import Panorama360Pipeline

    components = build_components(args.size)
    pipe = Panorama360Pipeline.from_components(**components, device=args.device)
    device, dtype = pipe.device, pipe.dtype
    shape = {"num_frames": args.frames, "height": args.height, "width": args.width}
    stamps: list[float] = []

    if args.variant == "ours":

        def generate(steps: int) -> None:
            video = pipe(
                "a volcano with smoke",
                num_inference_steps=steps,
                guidance_scale=7.5,
                seed=0,
                **shape,
                progress=lambda i, n: stamps.append(time.perf_counter()),
            )
            for _ in video.chunks():  # decoding is part of the job (diffusers decodes inside its call)
                pass
    else:
        from models.devices import configure_attention
        from models.groupnorm_v1 import use_animatediff_v1_norms
        from models.subpixel_upsample import use_subpixel_upsampling

        # plain diffusers on the same weights: its norms, upsampling and attention processors
        pipe.injector.remove()
        use_animatediff_v1_norms(pipe.unet, False)
        for model in (pipe.unet, pipe.vae):
            use_subpixel_upsampling(model, False)
        configure_attention(pipe.unet, device)
        plain = AnimateDiffPipeline(
            vae=pipe.vae,
            text_encoder=pipe.text_encoder,
            tokenizer=pipe.tokenizer,
            unet=pipe.unet,
            motion_adapter=None,
            scheduler=pipe.scheduler,
        )
        plain.set_progress_bar_config(disable=True)

        def generate(steps: int) -> None:
            plain(
                "a volcano with smoke",
                num_inference_steps=steps,
                guidance_scale=7.5,
                output_type="np",
                generator=torch.Generator("cpu").manual_seed(0),
                decode_chunk_size=default_decode_chunk_size(device),
                callback_on_step_end=lambda p, i, t, kw: (stamps.append(time.perf_counter()), kw)[1],
                **shape,
            )

    generate(1)  # warm-up: kernels, allocator, lazy inits
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    runs = []
    for _ in range(args.repeats):  # best of N: the machine may be shared
        stamps.clear()
        start = time.perf_counter()
        generate(args.steps)
        if device.type == "cuda":
            torch.cuda.synchronize()
        runs.append((time.perf_counter() - start, start, list(stamps)))
    elapsed, start, stamps = min(runs)
    step_times = [b - a for a, b in zip([start, *stamps[:-1]], stamps, strict=True)]
    return {
        "end_to_end_s": round(elapsed, 3),
        "s_per_step": round(sorted(step_times)[len(step_times) // 2], 4),
        "peak_memory_mb": round(peak_memory_mb(device), 1),
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "attention": pipe.attention,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["tiny", "full"], default="tiny")
    parser.add_argument("--device", default=None)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--height", type=int)
    parser.add_argument("--width", type=int)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variant", choices=["ours", "diffusers"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    full = args.size == "full"
    args.height = args.height or (512 if full else 64)
    args.width = args.width or 2 * args.height
    args.steps = args.steps or (25 if full else 4)

    if args.variant:
        print(json.dumps(run_variant(args)))
        return
    results = {}
    for variant in ("ours", "diffusers"):
        cmd = [
            sys.executable,
            __file__,
            "--variant",
            variant,
            "--size",
            args.size,
            "--frames",
            str(args.frames),
            "--height",
            str(args.height),
            "--width",
            str(args.width),
            "--steps",
            str(args.steps),
        ]
        if args.device:
            cmd += ["--device", args.device]
        child = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results[variant] = json.loads(child.stdout.strip().splitlines()[-1])
    ours, plain = results["ours"], results["diffusers"]
    print(
        json.dumps(
            {
                "size": args.size,
                "shape": {"frames": args.frames, "height": args.height, "width": args.width, "steps": args.steps},
                "ours": ours,
                "diffusers_animatediff": plain,
                "ratio_end_to_end": round(ours["end_to_end_s"] / plain["end_to_end_s"], 3),
                "ratio_s_per_step": round(ours["s_per_step"] / plain["s_per_step"], 3),
                "target_end_to_end_s": TARGETS_S[args.size],
                "meets_target": ours["end_to_end_s"] < TARGETS_S[args.size],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
