"""`dvd360 generate` (text [+ motion] -> 360° MP4 on this machine) and `dvd360 export-tiny`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from cli.flow_options import BACKEND_HELP, RaftWeights, flow_backend
from models.generation_params import (
    FPS_MAX,
    GUIDANCE_MAX,
    GenerationDefaults,
    GenerationLimits,
    limit_errors,
    panorama_size_error,
    request_params,
)
from models.media.flow_kinds import FLOW_KINDS, RAW_FLOW_SUFFIXES

DEFAULT_HELP = "Default: the model's (`dvd360 models list`; tiny: small and fast)."
CLI_OPTION = {"num_frames": "--frames", "height": "--height", "steps": "--steps"}


def register(app: typer.Typer) -> None:
    app.command()(generate)
    app.command("export-tiny")(export_tiny)


def _guess_flow_kind(path: Path) -> str:
    return "raw_flow" if path.suffix.lower() in RAW_FLOW_SUFFIXES else "flow_video"


def generate(
    prompt: Annotated[str, typer.Option(help="What the panorama shows.")],
    out: Annotated[Path, typer.Option(help="Output MP4 (equirectangular, with spherical metadata).")],
    negative_prompt: Annotated[str, typer.Option(help="What to steer away from.")] = "",
    flow: Annotated[Path | None, typer.Option(help="Motion: flow video, raw flow (.npy/.npz/.flo) or a clip.")] = None,
    flow_kind: Annotated[str | None, typer.Option(help=f"One of {', '.join(FLOW_KINDS)}; guessed if omitted.")] = None,
    flow_backend_name: Annotated[str, typer.Option("--flow-backend", help=BACKEND_HELP + " For a clip.")] = "dis",
    raft_weights: RaftWeights = None,
    model: Annotated[str, typer.Option(help="Base model name from the registry ('tiny' is built in).")] = "tiny",
    models: Annotated[Path | None, typer.Option(help="Model registry YAML.", envvar="DVD360_MODEL_REGISTRY")] = None,
    weights: Annotated[Path | None, typer.Option(help="A saved model folder (overrides --model).")] = None,
    frames: Annotated[int | None, typer.Option(min=1, help=DEFAULT_HELP)] = None,
    height: Annotated[int | None, typer.Option(min=64, help=DEFAULT_HELP)] = None,
    width: Annotated[int | None, typer.Option(min=128, help="Default: 2 x height.")] = None,
    steps: Annotated[int | None, typer.Option(min=1, help=DEFAULT_HELP)] = None,
    guidance: Annotated[float | None, typer.Option(min=0.0, max=GUIDANCE_MAX, help=DEFAULT_HELP)] = None,
    seed: Annotated[int | None, typer.Option(help="Random if omitted; the one used is printed.")] = None,
    adapter_scale: Annotated[float, typer.Option(help="Strength of the motion condition.")] = 1.0,
    latent_rotation: Annotated[bool, typer.Option(help="Roll latents a quarter turn per step.")] = True,
    rotate_features: Annotated[bool, typer.Option(help="Roll adapter features with the latents.")] = True,
    circular_padding: Annotated[bool, typer.Option(help="Width-circular padding from half-way.")] = True,
    fps: Annotated[int | None, typer.Option(min=1, max=FPS_MAX, help=DEFAULT_HELP)] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 ... (default: CUDA when present).")] = None,
    loop: Annotated[bool, typer.Option(help="A seamless loop: the last frame flows into the first.")] = False,
    interpolate_to: Annotated[
        int | None, typer.Option(help="Motion-compensated frame interpolation to 24 or 30 fps for players.")
    ] = None,
) -> None:
    """Generate a 360° video locally and write it as an MP4 that players recognise as spherical."""
    from tqdm import tqdm

    from models.enhancements import Enhancements
    from models.errors import CheckpointError
    from models.loading import load_pipeline, load_pipeline_folder
    from models.media.errors import FlowInputError
    from models.media.flow_video import load_flow_condition
    from models.media.interpolate import check_rate, interpolate_frames
    from models.media.video_writer import write_video
    from models.registry import RegistryError, load_registry
    from worker.settings import get_settings

    try:
        registry = load_registry(models or get_settings().model_registry)  # default: what `models pull` wrote
    except RegistryError as exc:
        raise typer.BadParameter(str(exc), param_hint="--models") from exc
    if weights is None and model not in registry:
        raise typer.BadParameter(
            f"unknown model {model!r}; available: {', '.join(registry.names())}", param_hint="--model"
        )
    # A saved folder is sized like a real model unless told otherwise; a registry model brings its own defaults.
    spec = registry.get(model) if weights is None else None
    given = {
        "num_frames": frames,
        "height": height,
        "width": width,
        "steps": steps,
        "guidance_scale": guidance,
        "fps": fps,
    }
    params = request_params(given, spec.generation_defaults if spec else GenerationDefaults())
    if reason := panorama_size_error(params["height"], params["width"]):
        raise typer.BadParameter(reason, param_hint="--width")
    for field, message in limit_errors(params, spec.generation_limits if spec else GenerationLimits()):
        raise typer.BadParameter(message, param_hint=CLI_OPTION[field])
    frames, height, width, steps, guidance, fps = (
        params[k] for k in ("num_frames", "height", "width", "steps", "guidance_scale", "fps")
    )
    try:
        check_rate(interpolate_to, fps)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--interpolate-to") from exc
    condition = None
    if flow is not None:
        kind = flow_kind or _guess_flow_kind(flow)
        if kind not in FLOW_KINDS:
            raise typer.BadParameter(f"use one of {', '.join(FLOW_KINDS)}", param_hint="--flow-kind")
        backend = flow_backend(flow_backend_name, raft_weights, device, "--flow-backend")
        try:
            condition = load_flow_condition(flow, kind, frames, height, width, backend, loop)
        except FlowInputError as exc:
            raise typer.BadParameter(str(exc), param_hint="--flow") from exc
        except CheckpointError as exc:
            raise typer.BadParameter(str(exc), param_hint="--raft-weights") from exc
        except ValueError as exc:  # a device this machine does not have
            raise typer.BadParameter(str(exc), param_hint="--device") from exc

    started = time.perf_counter()
    try:
        pipe = load_pipeline_folder(weights, device=device) if spec is None else load_pipeline(spec, device=device)
    except CheckpointError as exc:
        raise typer.BadParameter(str(exc), param_hint="--weights" if weights else "--model") from exc
    loaded = time.perf_counter()

    with tqdm(total=steps, desc="denoising", unit="step") as bar:
        video = pipe(
            prompt,
            negative_prompt=negative_prompt,
            flow=condition,
            num_frames=frames,
            height=height,
            width=width,
            num_inference_steps=steps,
            guidance_scale=guidance,
            seed=seed,
            adapter_scale=adapter_scale,
            enhancements=Enhancements(latent_rotation, rotate_features, circular_padding),
            progress=lambda done, total: bar.update(done - bar.n),
            loop=loop,
        )
    sampled = time.perf_counter()
    chunks = video.chunks()  # decoded while encoding
    if interpolate_to:
        chunks = interpolate_frames(chunks, frames, fps, interpolate_to, loop)
    path = write_video(chunks, out, fps=interpolate_to or fps)
    summary = {
        "out": str(path),
        "seed": video.seed,
        "frames": frames,
        "loop": loop,
        "fps": interpolate_to or fps,
        "size": [height, width],
        "load_s": round(loaded - started, 2),
        "sample_s": round(sampled - loaded, 2),
        "write_s": round(time.perf_counter() - sampled, 2),
    }
    typer.echo(json.dumps(summary))


def export_tiny(
    folder: Annotated[Path, typer.Argument(help="Where to write the model folder.")],
    seed: Annotated[int, typer.Option(help="Seed of the random weights.")] = 0,
) -> None:
    """Write the built-in tiny model as a model folder (what a registry `folder:` entry points to)."""
    from models.tiny import build_tiny_pipeline

    path = build_tiny_pipeline(seed=seed).save_pretrained(folder)
    typer.echo(f"tiny model written to {path}")
