"""The one function every result leaves through: frames -> H.264 MP4 (yuv420p, moov first) -> spherical
metadata injected as the last step (any later re-mux would drop it), written atomically."""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import av
import numpy as np

from models.media.spherical import inject_spherical


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """(F, H, W, 3) floats in [0, 1] (or uint8 already) -> uint8."""
    if frames.dtype == np.uint8:
        return frames
    return (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _checked_chunks(frames: np.ndarray | Iterable[np.ndarray]) -> Iterable[np.ndarray]:
    """uint8 (n, H, W, 3) chunks of one size; a single array is one chunk."""
    size = None
    for chunk in [frames] if isinstance(frames, np.ndarray) else frames:
        chunk = to_uint8(np.asarray(chunk))
        if chunk.ndim != 4 or chunk.shape[-1] != 3 or len(chunk) == 0 or size not in (None, chunk.shape[1:3]):
            raise ValueError(f"expected frames shaped (F, H, W, 3) with F >= 1, all of one size, got {chunk.shape}")
        size = chunk.shape[1:3]
        yield chunk
    if size is None:
        raise ValueError("expected frames shaped (F, H, W, 3) with F >= 1, got no frames")


def write_video(
    frames: np.ndarray | Iterable[np.ndarray], path: str | Path, fps: int = 8, quality: int = 18, spherical: bool = True
) -> Path:
    """Encode (F, H, W, 3) frames, or an iterable of such chunks (streamed: never all in memory), as H.264 at
    constant quality `quality` (CRF: lower is better), tagged as an equirectangular 360° video unless
    `spherical` is False.

    Written to a temporary file in the same folder and renamed, so `path` is never half-written.
    """
    path = Path(path)
    chunks = iter(_checked_chunks(frames))
    first = next(chunks)  # fails before any file is made
    height, width = first.shape[1:3]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".mp4", prefix=f".{path.stem}-", dir=path.parent)
    os.fchmod(fd, 0o644)  # mkstemp makes 0600; results are served and shared
    os.close(fd)
    try:
        # faststart: players (and presigned-URL streaming) can start before the whole file arrives
        with av.open(tmp, "w", format="mp4", options={"movflags": "faststart"}) as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = {"crf": str(quality), "preset": "veryfast"}
            for chunk in itertools.chain([first], chunks):
                for frame in chunk:
                    container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())
        if spherical:
            inject_spherical(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path
