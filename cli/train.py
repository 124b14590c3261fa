"""`dvd360 train` (the 360-Adapter) and `dvd360 data flows|captions` (preparing a WEB360-style training set)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from cli.flow_options import BACKEND_HELP, RaftDevice, RaftWeights, flow_backend

data_app = typer.Typer(help="Prepare training data: flow videos and 360 Text Fusion captions.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command()(train)
    app.add_typer(data_app, name="data")


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def train(
    config: Annotated[Path | None, typer.Option(help="Training settings, YAML or JSON (see TrainConfig).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a setting: key=value (repeatable).")] = None,
    resume: Annotated[
        str | None,
        typer.Option(help="'latest' (the run's newest checkpoint, or a fresh start) or a checkpoint folder."),
    ] = None,
    output_dir: Annotated[str | None, typer.Option(help="Run folder (checkpoints, samples, logs).")] = None,
    max_steps: Annotated[int | None, typer.Option(min=1)] = None,
) -> None:
    """Train the 360-Adapter (VAE, text encoder, UNet and motion module frozen). Multi-GPU: `accelerate launch`."""
    from models.training.config import TrainConfig, parse_override
    from models.training.trainer import train as run_training

    _logging()
    try:
        overrides = dict(parse_override(item) for item in set_ or [])
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--set") from exc
    if output_dir is not None:
        overrides["output_dir"] = output_dir
    if max_steps is not None:
        overrides["max_steps"] = max_steps
    try:
        settings = TrainConfig.from_file(config, overrides).validate()
    except (ValueError, OSError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--config/--set") from exc
    result = run_training(settings, resume=resume)
    summary = {
        "step": result.step,
        "last_loss": result.losses[-1] if result.losses else None,
        "checkpoints": [str(p) for p in result.checkpoints],
        "samples": [str(p) for p in result.samples],
        "skipped_clips": result.skipped,
        "resumed_from": str(result.resumed_from) if result.resumed_from else None,
    }
    typer.echo(json.dumps(summary))


@data_app.command("flows")
def flows(
    videos_dir: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Folder of ERP videos.")],
    flows_dir: Annotated[Path, typer.Argument(file_okay=False, help="Where the flow videos go (same names).")],
    workers: Annotated[int, typer.Option(min=1, help="Parallel processes.")] = 4,
    backend: Annotated[str, typer.Option(help=BACKEND_HELP)] = "dis",
    raft_weights: RaftWeights = None,
    device: RaftDevice = None,
    height: Annotated[int, typer.Option(min=16, help="Frames are resized to height x width first.")] = 512,
    width: Annotated[int, typer.Option(min=32)] = 1024,
    max_frames: Annotated[int | None, typer.Option(min=2, help="Only the first N frames of each video.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Redo flow videos that already exist.")] = False,
) -> None:
    """Write a colour-coded flow video for every video (parallel; finished ones are skipped, so reruns resume)."""
    from tqdm import tqdm

    from models.training.flows import extract_dataset_flows

    method = flow_backend(backend, raft_weights, device, "--backend")
    _logging()
    with tqdm(desc="flows", unit="video") as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        report = extract_dataset_flows(
            videos_dir, flows_dir, workers, method, (height, width), max_frames, overwrite, progress
        )
    typer.echo(json.dumps({**report.summary(), "errors": report.failed}))
    if report.failed:
        raise typer.Exit(1)


@data_app.command("captions")
def captions(
    videos_dir: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Folder of ERP videos.")],
    out_csv: Annotated[Path, typer.Argument(dir_okay=False, help="CSV to write (videoid,name); reruns resume it.")],
    blip: Annotated[Path, typer.Option(help="Local BLIP captioning weights folder (nothing is downloaded).")],
    llm_base_url: Annotated[
        str, typer.Option(help="OpenAI-compatible base URL (…/v1).", envvar="DVD360_FUSION_BASE_URL")
    ] = "http://localhost:8000/v1",
    llm_model: Annotated[str, typer.Option(help="Chat model name.", envvar="DVD360_FUSION_MODEL")] = "gpt-4o-mini",
    api_key_env: Annotated[str, typer.Option(help="Environment variable holding the API key (if any).")] = (
        "OPENAI_API_KEY"
    ),
    retries: Annotated[int, typer.Option(min=0)] = 4,
    timeout: Annotated[float, typer.Option(min=1.0, help="Seconds per chat request.")] = 60.0,
    frame: Annotated[str, typer.Option(help="'middle' or a frame index.")] = "middle",
    view_size: Annotated[int, typer.Option(min=32, help="Side of each perspective view.")] = 512,
    device: Annotated[str | None, typer.Option(help="Device for BLIP (default: CUDA when present).")] = None,
) -> None:
    """360 Text Fusion: BLIP captions of four 90-degree views, fused into one panorama caption by an LLM."""
    from tqdm import tqdm

    from models.training.captioner import BlipCaptioner
    from models.training.fusion_client import FusionClient, FusionSettings
    from models.training.text_fusion import caption_videos

    _logging()
    if frame != "middle" and not frame.isdigit():
        raise typer.BadParameter("use 'middle' or a frame index", param_hint="--frame")
    captioner = BlipCaptioner.from_pretrained(blip, device=device)
    settings = FusionSettings(
        base_url=llm_base_url, model=llm_model, api_key_env=api_key_env, retries=retries, timeout_s=timeout
    )
    with FusionClient(settings) as fusion, tqdm(desc="captions", unit="video") as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        report = caption_videos(videos_dir, out_csv, captioner, fusion, frame, view_size, progress)
    typer.echo(json.dumps({**report.summary(), "errors": report.failed}))
    if report.failed:
        raise typer.Exit(1)
