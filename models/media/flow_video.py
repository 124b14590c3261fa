"""Motion uploads -> the tensor the pipeline expects: (frames, 3, H, W) float32 in [-1, 1].

Three kinds: a flow video (already colour-coded), raw flow fields (.npy/.npz/.flo, encoded here) and a
panoramic clip whose motion is copied (flow extracted, then encoded).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import av
import cv2
import numpy as np

from models.media.errors import FlowInputError
from models.media.flow_encoding import encode_flow
from models.media.flow_extract import FlowBackend, extract_flow
from models.media.flow_kinds import FLOW_KINDS
from models.media.video_reader import CorruptVideo, read_frames

FLO_MAGIC = 202021.25
MAX_RAW_BYTES = 2 * 1024**3  # refuse headers that declare more (an allocation bomb), before reading data


def sample_indices(available: int, num_frames: int) -> np.ndarray:
    """The published sampling: linspace(0, n, n) rounded down (0, 1, ..., 14, 16 for 16), within the video."""
    return np.minimum(np.linspace(0, num_frames, num_frames).astype(int), available - 1)


# Upload policy, checked from the container before decoding: real motion videos are short panoramas or flow
# renders; anything outside these bounds is an error or an attack on memory, refused with the reason.
VIDEO_CONTAINERS = {"mov", "mp4", "matroska", "webm", "avi"}
MIN_FRAMES, MAX_FRAMES = 2, 1000
MIN_SIDE, MAX_PIXELS, MAX_ASPECT = 32, 4096 * 2048, 4.0


def check_video_policy(path: str | Path) -> int:
    """Refuse pictures, absurd sizes and frame counts before any frame is decoded; returns the frame count
    (counted by demuxing packets, which costs no decoding)."""
    name = Path(path).name
    try:
        with av.open(str(path)) as container:
            if not VIDEO_CONTAINERS & set(container.format.name.split(",")):
                kind = container.format.long_name
                raise FlowInputError(f"{name}: a {kind} file is not a video; upload MP4, WebM or MOV")
            if not container.streams.video:
                raise FlowInputError(f"{name}: has no video stream; upload a flow video (MP4/WebM/MOV)")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            if (
                min(width, height) < MIN_SIDE
                or width * height > MAX_PIXELS
                or max(width, height) > MAX_ASPECT * min(width, height)
            ):
                raise FlowInputError(
                    f"{name}: {width} x {height} is outside the accepted sizes (sides from {MIN_SIDE} px, at most "
                    f"{MAX_PIXELS // 2**20} MP, aspect up to {MAX_ASPECT:g}:1); upload a 2:1 panorama like 1024 x 512"
                )
            frames = 0
            for packet in container.demux(stream):
                frames += packet.size > 0
                if frames > MAX_FRAMES:
                    raise FlowInputError(f"{name}: more than {MAX_FRAMES} frames; upload at most {MAX_FRAMES}")
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise FlowInputError(f"{name}: not a readable video ({exc}); upload MP4, WebM or MOV") from exc
    if frames < MIN_FRAMES:
        raise FlowInputError(f"{name}: {frames} frame(s); motion needs at least {MIN_FRAMES} frames")
    return frames


def decode_rgb(path: str | Path, max_frames: int | None = None) -> list[np.ndarray]:
    """The first `max_frames` frames (all when None) of a video that passes the upload policy."""
    count = check_video_policy(path)
    try:
        return list(read_frames(path, range(min(count, max_frames or count))))
    except CorruptVideo as exc:
        reason = exc.__cause__ or "frames are missing"
        raise FlowInputError(f"{Path(path).name}: not a readable video ({reason}); upload MP4, WebM or MOV") from exc


def _resize(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)


def _to_condition(frames: np.ndarray) -> np.ndarray:
    return (frames.astype(np.float32) / 127.5 - 1.0).transpose(0, 3, 1, 2)


def read_flow_condition(path: str | Path, num_frames: int = 16, height: int = 512, width: int = 1024) -> np.ndarray:
    frames = decode_rgb(path, num_frames + 1)  # the published sampling never reaches past frame num_frames
    if not frames:
        raise FlowInputError(f"{Path(path).name}: the video has no frames")
    picked = [frames[i] for i in sample_indices(len(frames), num_frames)]
    return _to_condition(np.stack([_resize(f, height, width) for f in picked]))


def read_flo(path: Path) -> np.ndarray:
    """Middlebury .flo: float32 magic 202021.25, int32 width and height, then H x W x 2 float32."""
    data = path.read_bytes()
    if len(data) < 12 or np.frombuffer(data[:4], "<f4")[0] != FLO_MAGIC:
        raise FlowInputError(f"{path.name}: not a Middlebury .flo file (wrong magic number)")
    width, height = (int(x) for x in np.frombuffer(data[4:12], "<i4"))
    if not (0 < width <= 16384 and 0 < height <= 16384) or len(data) != 12 + width * height * 8:
        raise FlowInputError(f"{path.name}: .flo header says {width} x {height}, which does not match its data")
    return np.frombuffer(data[12:], "<f4").reshape(1, height, width, 2)


def read_raw_flow(path: str | Path) -> np.ndarray:
    """(F, H, W, 2) float32 flow from .npy, .npz (array `flow` or the only array) or .flo; checked."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".flo":
            flow = read_flo(path)
        elif path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                names = archive.files
                if not names:
                    raise FlowInputError(f"{path.name}: the archive holds no arrays")
                flow = archive["flow" if "flow" in names else names[0]]
        else:
            with path.open("rb") as f:  # check the declared size before numpy allocates it
                version = np.lib.format.read_magic(f)
                read_header = (
                    np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                )
                shape, _, dtype = read_header(f)
            if int(np.prod(shape, dtype=np.int64)) * dtype.itemsize > MAX_RAW_BYTES:
                raise FlowInputError(f"{path.name}: declares an array of shape {shape}, far too large")
            flow = np.load(path, allow_pickle=False)
    except FlowInputError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:  # bad headers, pickles, zips
        raise FlowInputError(f"{path.name}: not a readable flow array ({exc}); save it with numpy.save") from exc
    if not isinstance(flow, np.ndarray):
        raise FlowInputError(f"{path.name}: not a numpy array file; save the flow with numpy.save")
    if flow.ndim == 3:
        flow = flow[None]
    if flow.ndim != 4 or flow.shape[-1] != 2 or not np.issubdtype(flow.dtype, np.number) or len(flow) == 0:
        raise FlowInputError(f"{path.name}: flow must be shaped (frames, H, W, 2) of numbers, got {flow.shape}")
    flow = flow.astype(np.float32)
    if not np.isfinite(flow).all():
        raise FlowInputError(f"{path.name}: flow holds NaN or infinite values")
    return flow


def resize_flow(flow: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resample flow fields to the output size; vectors are in pixels, so they scale with the size."""
    scale = np.array([width / flow.shape[2], height / flow.shape[1]], np.float32)
    return np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_LINEAR) * scale for f in flow])


def read_panorama_clip(path: str | Path, max_frames: int | None = None) -> list[np.ndarray]:
    frames = decode_rgb(path, max_frames)
    if len(frames) < 2:
        raise FlowInputError(f"{Path(path).name}: a clip needs at least 2 frames to copy motion from")
    h, w = frames[0].shape[:2]
    if w != 2 * h:
        raise FlowInputError(f"{Path(path).name}: {w} x {h} is not an equirectangular (2:1) panorama")
    return frames


def load_flow_condition(
    path: str | Path, kind: str, num_frames: int, height: int, width: int, backend: FlowBackend | str = "dis"
) -> np.ndarray:
    """A motion file of the given kind as a flow condition (the published frame sampling for every kind);
    `backend` measures a panorama clip's flow."""
    if kind == "flow_video":
        return read_flow_condition(path, num_frames, height, width)
    if kind == "raw_flow":
        flow = read_raw_flow(path)
    elif kind == "panorama_clip":
        frames = read_panorama_clip(path, num_frames + 2)  # the sampled flows reach frame num_frames + 1
        flow = extract_flow(np.stack([_resize(f, height, width) for f in frames]), backend)
    else:
        raise FlowInputError(f"unknown motion kind {kind!r}; use one of {', '.join(FLOW_KINDS)}")
    flow = flow[sample_indices(len(flow), num_frames)]
    return _to_condition(encode_flow(resize_flow(flow, height, width)))
