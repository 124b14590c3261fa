"""The one PyAV frame reader: chosen frames of a video, optionally resized (motion uploads, evaluation,
training data), plus frame counts and video file discovery for datasets."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import av
import cv2
import numpy as np

from models.media.errors import FlowInputError, VideoFileError
from models.media.flow_kinds import VIDEO_SUFFIXES


class CorruptVideo(VideoFileError):
    """A file that cannot be decoded into the frames asked for."""


# No codec allocates a picture above this many pixels (an 8K panorama): FFmpeg's own `max_pixels` check runs
# before each frame buffer is allocated, in every libavcodec decoder and while the container is probed.
MAX_DECODE_PIXELS = 7680 * 3840
DECODE_THREADS = 2  # frame threads each hold a picture: a fixed, small number bounds memory on any machine

FrameCheck = Callable[[int, int, int], None]  # (index, width, height): raises to refuse a frame before conversion


def open_video(path: str | Path, max_pixels: int = MAX_DECODE_PIXELS) -> av.container.InputContainer:
    """The container with its first video stream's decoder limited to `max_pixels` per picture (probing too)."""
    limit = {"max_pixels": str(max_pixels)}
    container = av.open(str(path), options=limit)
    if container.streams.video:
        stream = container.streams.video[0]
        stream.codec_context.options = limit
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = DECODE_THREADS
    return container


def _resize(frame: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    if size is None or frame.shape[:2] == tuple(size):
        return frame
    h, w = size
    interpolation = cv2.INTER_AREA if h < frame.shape[0] else cv2.INTER_LINEAR
    return cv2.resize(frame, (w, h), interpolation=interpolation)


def _checked_frames(
    path: str | Path, max_pixels: int, max_decoded_pixels: int | None, check: FrameCheck | None
) -> Iterator[tuple[int, av.VideoFrame]]:
    """(index, decoded frame) of the first video stream, each checked before it is handed out: the first frame's
    size, `check`, and the decoding work so far (`max_decoded_pixels`, all frames decoded). Raises CorruptVideo."""
    first, decoded = None, 0
    try:
        with open_video(path, max_pixels) as container:
            for i, frame in enumerate(container.decode(container.streams.video[0])):
                first = first or (frame.width, frame.height)
                if (frame.width, frame.height) != first:
                    raise CorruptVideo(
                        f"{path}: frame {i} is {frame.width} x {frame.height} but the video starts at "
                        f"{first[0]} x {first[1]}; every frame must have the same size"
                    )
                if check is not None:
                    check(i, frame.width, frame.height)
                decoded += frame.width * frame.height
                if max_decoded_pixels is not None and decoded > max_decoded_pixels:
                    raise CorruptVideo(f"{path}: decoding would exceed {max_decoded_pixels / 1e6:g} megapixels")
                yield i, frame
    except (VideoFileError, FlowInputError):
        raise  # already says what is wrong
    except (av.FFmpegError, OSError, ValueError, IndexError, UnicodeDecodeError) as exc:
        raise CorruptVideo(f"{path}: {exc}") from exc


def _rgb(path: str | Path, frame: av.VideoFrame) -> np.ndarray:
    try:
        return frame.to_ndarray(format="rgb24")
    except (av.FFmpegError, ValueError) as exc:
        raise CorruptVideo(f"{path}: {exc}") from exc


def read_frames(
    path: str | Path,
    indices: Sequence[int] | None = None,
    size: tuple[int, int] | None = None,
    *,
    max_pixels: int = MAX_DECODE_PIXELS,
    max_decoded_pixels: int | None = None,
    check: FrameCheck | None = None,
) -> np.ndarray:
    """uint8 (N, H, W, 3) RGB frames at `indices` (all frames if None), resized to size=(H, W) if given (each
    frame as it is decoded, so only the resized frames are held).

    Every decoded frame must have the first frame's size (a stream that changes size mid-way is refused) and
    pass `check`; `max_decoded_pixels` bounds the decoding work (all frames decoded, kept or skipped).
    Raises CorruptVideo when the file cannot be opened, breaks these bounds or holds fewer frames than asked for.
    """
    wanted = None if indices is None else sorted(set(int(i) for i in indices))
    last = None if wanted is None else wanted[-1]
    frames: dict[int, np.ndarray] = {}
    for i, frame in _checked_frames(path, max_pixels, max_decoded_pixels, check):
        if wanted is None or i in wanted:
            frames[i] = _resize(_rgb(path, frame), size)
        if last is not None and i >= last:
            break
    if wanted is None:
        if not frames:
            raise CorruptVideo(f"{path}: no frames")
        return np.stack([frames[i] for i in sorted(frames)])
    missing = [i for i in wanted if i not in frames]
    if missing:
        raise CorruptVideo(f"{path}: has {len(frames)} of the frames asked for (missing {missing[:3]}...)")
    return np.stack([frames[int(i)] for i in indices])


def check_frames(
    path: str | Path,
    *,
    max_pixels: int = MAX_DECODE_PIXELS,
    max_decoded_pixels: int | None = None,
    check: FrameCheck | None = None,
) -> None:
    """Decode every frame (none is converted or kept) with read_frames' checks. Only decoding shows that a stream
    changes size mid-way: no container or codec header has to say so."""
    for _ in _checked_frames(path, max_pixels, max_decoded_pixels, check):
        pass


def iter_frames(
    path: str | Path,
    *,
    max_pixels: int = MAX_DECODE_PIXELS,
    max_decoded_pixels: int | None = None,
    check: FrameCheck | None = None,
) -> Iterator[np.ndarray]:
    """Every frame in order as uint8 (H, W, 3) RGB, one decoded frame held at a time, checked as `read_frames`
    checks them (a file with no frames yields none)."""
    for _, frame in _checked_frames(path, max_pixels, max_decoded_pixels, check):
        yield _rgb(path, frame)


def video_info(path: str | Path) -> tuple[int, float]:
    """(frame count, frames per second); the count is decoded when the container does not store it."""
    try:
        with open_video(path) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 8)
            count = stream.frames or sum(1 for _ in container.decode(stream))
    except (av.FFmpegError, OSError, ValueError, IndexError) as exc:
        raise CorruptVideo(f"{path}: {exc}") from exc
    return int(count), fps


def find_video(folder: str | Path, name: str) -> Path | None:
    """The file in `folder` called `name`, or `name` plus a video suffix."""
    folder = Path(folder)
    direct = folder / name
    if direct.suffix.lower() in VIDEO_SUFFIXES and direct.is_file():
        return direct
    for suffix in VIDEO_SUFFIXES:
        candidate = folder / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def list_videos_in(folder: str | Path) -> list[Path]:
    """The video files directly inside `folder`, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
