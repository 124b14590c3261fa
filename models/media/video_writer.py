"""The one function every result leaves through: frames -> H.264 MP4 (yuv420p, moov first) -> spherical
metadata injected as the last step (any later re-mux would drop it), written atomically.

The stream declares the lowest H.264 level (ITU-T H.264 Annex A) that holds its frame size and rate, 3.0 at
least, and the encoder keeps to that level's bitrate cap (High profile, as x264 picks it unless lossless), so the
level is true: players and browsers decide from it whether their decoder can play the file. 2048 x 4096 is level
5.1 up to 30 fps, which phones and headsets that play 4K decode (4096 pixels is also the usual WebGL texture limit
on phones); 1024 x 2048 is 4.0 up to 30 fps; 512 x 1024 is 3.1."""

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


# (level, max macroblocks per second, max macroblocks per frame, High-profile max bitrate and CPB size in kbit/s, kbit)
H264_LEVELS = (
    ("3.0", 40500, 1620, 12500, 12500),
    ("3.1", 108000, 3600, 17500, 17500),
    ("3.2", 216000, 5120, 25000, 25000),
    ("4.0", 245760, 8192, 25000, 31250),
    ("4.1", 245760, 8192, 62500, 78125),
    ("4.2", 522240, 8704, 62500, 78125),
    ("5.0", 589824, 22080, 168750, 168750),
    ("5.1", 983040, 36864, 300000, 300000),
    ("5.2", 2073600, 36864, 300000, 300000),
)


def h264_level(width: int, height: int, fps: int) -> tuple[str, int, int]:
    """(level, max bitrate kbit/s, buffer kbit) of the lowest level from 3.0 that holds width x height at fps."""
    columns, rows = -(-width // 16), -(-height // 16)  # macroblocks
    for level, per_second, per_frame, bitrate, buffer in H264_LEVELS:
        side = (8 * per_frame) ** 0.5  # neither side may exceed this many macroblocks
        if columns * rows <= per_frame and columns * rows * fps <= per_second and max(columns, rows) <= side:
            return level, bitrate, buffer
    raise ValueError(f"no H.264 level up to 5.2 holds {width} x {height} at {fps} fps")


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
            level, bitrate, buffer = h264_level(width, height, fps)
            stream.options = {"crf": str(quality), "preset": "veryfast", "level": level}
            stream.options |= {"maxrate": f"{bitrate}k", "bufsize": f"{buffer}k"}
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
