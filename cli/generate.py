"""`dvd360 generate` (text [+ motion] -> 360° MP4 on this machine) and `dvd360 export-tiny`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from cli.flow_options import BACKEND_HELP, RaftWeights, flow_backend
from cli.request_options import usage_error, with_request_options
from core.request import GenerationRequest, RequestError, find_model
from models.media.flow_kinds import FLOW_KINDS, RAW_FLOW_SUFFIXES

# what only a service does with a request: a stored upload, webhooks, deadlines
SERVICE_FIELDS = {"flow_id", "webhook_url", "webhook_events", "deadline_s"}


def register(app: typer.Typer) -> None:
    app.command()(generate)
    app.command("export-tiny")(export_tiny)


def guess_flow_kind(path: Path) -> str:
    return "raw_flow" if path.suffix.lower() in RAW_FLOW_SUFFIXES else "flow_video"


@with_request_options(exclude=SERVICE_FIELDS)
def generate(
    out: Annotated[Path, typer.Option(help="Output MP4 (equirectangular, with spherical metadata).")],
    request: GenerationRequest,
    flow: Annotated[Path | None, typer.Option(help="Motion: flow video, raw flow (.npy/.npz/.flo) or a clip.")] = None,
    flow_kind: Annotated[str | None, typer.Option(help=f"One of {', '.join(FLOW_KINDS)}; guessed if omitted.")] = None,
    flow_backend_name: Annotated[str, typer.Option("--flow-backend", help=BACKEND_HELP + " For a clip.")] = "dis",
    raft_weights: RaftWeights = None,
    models: Annotated[Path | None, typer.Option(help="Model registry YAML.", envvar="DVD360_MODEL_REGISTRY")] = None,
    weights: Annotated[Path | None, typer.Option(help="A saved model folder (instead of a registry model).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 ... (default: CUDA when present).")] = None,
) -> None:
    """Generate a 360° video locally and write it as an MP4 that players recognise as spherical. Options left out
    take the model's defaults (`dvd360 models list`); the same request through the service gives the same frames."""
    from tqdm import tqdm

    from core.settings import get_settings
    from models.errors import CheckpointError
    from models.media.errors import FlowInputError
    from models.media.flow_video import check_motion_file
    from models.registry import ModelSpec, RegistryError, load_registry
    from worker.predictor import Generator, Motion, PipelineOptions, PredictionHooks

    try:
        registry = load_registry(models or get_settings().model_registry)  # default: what `models pull` wrote
    except RegistryError as exc:
        raise typer.BadParameter(str(exc), param_hint="--models") from exc
    try:
        # a saved folder is sized like a real model; a registry model brings its own defaults and limits
        spec = (
            find_model(registry, request.base_model)
            if weights is None
            else ModelSpec(name=request.base_model, folder=weights)
        )
        request = request.resolve(spec)
    except RequestError as exc:
        raise usage_error(exc) from exc
    motion = None
    if flow is not None:
        motion = Motion(flow, flow_kind or guess_flow_kind(flow))
        if motion.kind not in FLOW_KINDS:
            raise typer.BadParameter(f"use one of {', '.join(FLOW_KINDS)}", param_hint="--flow-kind")
        try:  # the service's upload check, before minutes of loading a model
            request.check_motion_length(check_motion_file(flow, motion.kind))
        except FlowInputError as exc:
            raise typer.BadParameter(str(exc), param_hint="--flow") from exc
        except RequestError as exc:
            raise usage_error(exc) from exc
    backend = flow_backend(flow_backend_name, raft_weights, device, "--flow-backend")

    started = time.perf_counter()
    try:
        generator = Generator().setup(spec, device, PipelineOptions(), backend)
    except CheckpointError as exc:
        raise typer.BadParameter(str(exc), param_hint="--weights" if weights else "--model") from exc
    except ValueError as exc:  # a device this machine does not have
        raise typer.BadParameter(str(exc), param_hint="--device") from exc
    loaded = time.perf_counter()
    with tqdm(total=request.steps, desc="denoising", unit="step") as bar:

        def progress(done: int, total: int, _elapsed_s: float) -> None:
            bar.total = total  # a refined request denoises in stages: more steps than `steps`
            bar.update(done - bar.n)

        hooks = PredictionHooks(progress=progress)
        try:
            prediction = generator.predict(request, {"video": out}, motion, hooks)
        except FlowInputError as exc:
            raise typer.BadParameter(str(exc), param_hint="--flow") from exc
        except CheckpointError as exc:
            raise typer.BadParameter(str(exc), param_hint="--raft-weights") from exc
    summary = {
        "out": str(prediction.files["video"]),
        "seed": prediction.seed,
        "frames": request.num_frames,
        "loop": request.loop,
        "fps": request.interpolate_to or request.fps,
        "size": [request.height, request.width],
        "load_s": round(loaded - started, 2),
        "sample_s": prediction.timings.pipeline_s,
        "step_s": prediction.timings.step_s,
        "scheduler": request.scheduler,
        "steps": request.steps,
        "quality_figures": prediction.quality_figures.model_dump() if prediction.quality_figures else None,
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
