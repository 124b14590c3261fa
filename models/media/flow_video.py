"""Flow condition videos -> the tensor the pipeline expects: (frames, 3, H, W) float32 in [-1, 1]."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np

from models.media.errors import FlowInputError

FLOW_KINDS = ("flow_video",)


def sample_indices(available: int, num_frames: int) -> np.ndarray:
    """The published sampling: linspace(0, n, n) rounded down (0, 1, ..., 14, 16 for 16), within the video."""
    return np.minimum(np.linspace(0, num_frames, num_frames).astype(int), available - 1)


def decode_rgb(path: str | Path) -> list[np.ndarray]:
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise FlowInputError(f"{Path(path).name}: has no video stream; upload a flow video (MP4/WebM/MOV)")
            return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise FlowInputError(f"{Path(path).name}: not a readable video ({exc}); upload MP4, WebM or MOV") from exc


def read_flow_condition(path: str | Path, num_frames: int = 16, height: int = 512, width: int = 1024) -> np.ndarray:
    frames = decode_rgb(path)
    if not frames:
        raise FlowInputError(f"{Path(path).name}: the video has no frames")
    picked = [frames[i] for i in sample_indices(len(frames), num_frames)]
    resized = np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in picked])
    return (resized.astype(np.float32) / 127.5 - 1.0).transpose(0, 3, 1, 2)


def load_flow_condition(path: str | Path, kind: str, num_frames: int, height: int, width: int) -> np.ndarray:
    """A motion file of the given kind as a flow condition (raw flow and clip extraction: the media issue)."""
    if kind not in FLOW_KINDS:
        raise FlowInputError(f"motion kind {kind!r} is not supported yet; use one of {', '.join(FLOW_KINDS)}")
    return read_flow_condition(path, num_frames, height, width)
