"""`dvd360 flow encode|extract`, `dvd360 inject` and `dvd360 evaluate`: media tools for users' own files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cli.flow_options import BACKEND_HELP, RaftDevice, RaftWeights, flow_backend

flow_app = typer.Typer(help="Make flow condition videos.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(flow_app, name="flow")
    app.command()(inject)
    app.command()(evaluate)


def _fail(exc: ValueError, hint: str) -> typer.BadParameter:
    return typer.BadParameter(str(exc), param_hint=hint)


@flow_app.command("encode")
def flow_encode(
    flow: Annotated[Path, typer.Argument(help="Raw flow: .npy/.npz (frames x H x W x 2) or Middlebury .flo.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Flow video to write (MP4).")],
    fps: Annotated[int, typer.Option(min=1, max=60)] = 8,
) -> None:
    """Encode raw optical flow as the colour video the 360-Adapter reads."""
    from models.media.errors import FlowInputError
    from models.media.flow_encoding import encode_flow
    from models.media.flow_video import read_raw_flow
    from models.media.video_writer import write_video

    try:
        fields = read_raw_flow(flow)
    except FlowInputError as exc:
        raise _fail(exc, "FLOW") from exc
    # near-lossless: the adapter reads colours, compression artefacts would read as motion
    path = write_video(encode_flow(fields), out, fps=fps, quality=0, spherical=False)
    typer.echo(json.dumps({"out": str(path), "frames": len(fields), "size": list(fields.shape[1:3])}))


@flow_app.command("extract")
def flow_extract(
    clip: Annotated[Path, typer.Argument(help="A 360° (2:1) clip whose motion should be copied.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Flow video to write (MP4).")],
    backend: Annotated[str, typer.Option(help=BACKEND_HELP)] = "dis",
    raft_weights: RaftWeights = None,
    device: RaftDevice = None,
    height: Annotated[int, typer.Option(help="Flow is measured at this height (width 2x).")] = 512,
    fps: Annotated[int, typer.Option(min=1, max=60)] = 8,
) -> None:
    """Measure a panoramic clip's optical flow (seam-continuous) and write it as a flow video."""
    import cv2
    import numpy as np
    from tqdm import tqdm

    from models.errors import CheckpointError
    from models.media.errors import FlowInputError
    from models.media.flow_encoding import encode_flow
    from models.media.flow_extract import extract_flow
    from models.media.flow_video import read_panorama_clip
    from models.media.video_writer import write_video

    method = flow_backend(backend, raft_weights, device, "--backend")
    try:
        frames = read_panorama_clip(clip)
        frames = np.stack([cv2.resize(f, (2 * height, height), interpolation=cv2.INTER_AREA) for f in frames])
        with tqdm(total=len(frames) - 1, desc="optical flow", unit="frame") as bar:
            fields = extract_flow(frames, method, progress=lambda done, _: bar.update(done - bar.n))
    except FlowInputError as exc:
        raise _fail(exc, "CLIP") from exc
    except CheckpointError as exc:
        raise _fail(exc, "--raft-weights") from exc
    except ValueError as exc:  # a device this machine does not have
        raise _fail(exc, "--device") from exc
    path = write_video(encode_flow(fields), out, fps=fps, quality=0, spherical=False)
    typer.echo(json.dumps({"out": str(path), "frames": len(fields), "size": [height, 2 * height]}))


def _not_erp(video: Path) -> str | None:
    """Why `video` is not an equirectangular panorama (2:1), or None; unreadable files are left to the command."""
    from models.media.video_reader import open_video

    try:
        with open_video(video) as container:
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
    except Exception:  # the command itself reports what is wrong with the file
        return None
    if width != 2 * height:
        return f"{video.name} is {width} x {height}, not 2:1: an equirectangular 360° video is twice as wide as high"
    return None


def inject(
    video: Annotated[Path, typer.Argument(help="An equirectangular (2:1) H.264 MP4.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Where to write the tagged copy.")],
    force: Annotated[bool, typer.Option(help="Tag it even when it is not 2:1 (players will stretch it).")] = False,
) -> None:
    """Tag an equirectangular MP4 as a 360° video (spherical metadata V1 + V2) for YouTube, VLC and headsets."""
    from models.media.errors import VideoFileError
    from models.media.spherical import inject_spherical

    if (reason := _not_erp(video)) and not force:
        raise typer.BadParameter(f"{reason}; pass --force to tag it anyway", param_hint="VIDEO")
    try:
        typer.echo(str(inject_spherical(video, out)))
    except (VideoFileError, OSError) as exc:
        raise typer.BadParameter(str(exc), param_hint="VIDEO") from exc


def evaluate(
    video: Annotated[Path, typer.Argument(help="A panoramic (equirectangular, 2:1) video.")],
    window: Annotated[int, typer.Option(min=1, help="The context window length it was generated with.")] = 16,
    spatial_window: Annotated[
        str,
        typer.Option(
            help="The spatial window HxW it was generated with (the model's native size; 64x128 for the tiny "
            "model): where spatial_window_seam_ratio looks, for videos larger than it."
        ),
    ] = "512x1024",
    spatial_overlap: Annotated[int, typer.Option(min=0, help="The windows' overlap in pixels.")] = 0,
) -> None:
    """Print a panoramic video's scores as JSON, decoded a frame at a time (pixels in [0, 1]).

    \b
    Every ratio reads the same way: ~1 means the flaw it looks for does not show. Expected values, and what the
    tiny model's noise-like videos score from chance alone: docs/quality-figures.md.
    end_continuity     mean |last column - first column|: published models score 0.027-0.034 (PanoWan).
    seam_ratio         end_continuity over the mean difference across interior column boundaries on the 8-pixel
                       grid (where the seam lies for the VAE and H.264): ~1 = the seam looks like any other
                       boundary. Tiny model: 0.9-1.1 from chance (1.2-1.5 after --interpolate-to).
    frame_consistency  mean |frame t+1 - frame t|: 0 = a still, 0.01-0.05 steady motion, larger values flicker.
    loop_closure       mean |first frame - last frame| over the median consecutive difference: ~1 = the video
                       loops without a jump. Tiny model: 0.9-1.3 by chance, with or without --loop.
    window_seam_ratio  mean difference into frames at multiples of --window (where temporal context windows meet)
                       over the mean elsewhere: ~1 = they do not show, above ~1.2 they do; null for one window.
    spatial_window_seam_ratio  differences across the spatial window borders of the --spatial-window layout over
                       those beside them (8 x 8 blocks): ~1 = windows do not show, above ~1.2 they do; null for
                       videos within one window.
    A file that is not 2:1 is scored but warned about: its seam metrics assume a full 360° width.
    """
    from models.media.errors import FlowInputError, VideoFileError
    from models.media.evaluate import evaluate_video
    from models.spatial_windows import SpatialWindows

    try:
        height, width = (int(side) for side in spatial_window.lower().split("x"))
        windows = SpatialWindows.from_pixels((height, width), spatial_overlap)
    except ValueError as exc:
        raise typer.BadParameter(f"give HxW in multiples of 64 pixels ({exc})", param_hint="--spatial-window") from exc
    if reason := _not_erp(video):
        typer.echo(f"warning: {reason}; seam scores assume a full 360° panorama", err=True)
    try:
        typer.echo(json.dumps(evaluate_video(video, window, windows)))
    except (VideoFileError, FlowInputError) as exc:
        raise typer.BadParameter(str(exc), param_hint="VIDEO") from exc
