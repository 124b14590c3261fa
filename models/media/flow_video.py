"""Motion uploads -> the tensor the pipeline expects: (frames, 3, H, W) float32 in [-1, 1].

Three kinds: a flow video (already colour-coded), raw flow fields (.npy/.npz/.flo, encoded here) and a
panoramic clip whose motion is copied (flow extracted, then encoded).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from models.media.errors import FlowInputError
from models.media.flow_encoding import encode_flow
from models.media.flow_extract import FlowBackend, extract_flow
from models.media.flow_kinds import FLOW_KINDS
from models.media.raw_flow import raw_flow_count, read_raw_flow, resize_flow
from models.media.video_reader import CorruptVideo, check_frames, iter_frames, open_video, read_frames


def sample_indices(available: int, num_frames: int, loop: bool = False) -> np.ndarray:
    """The published sampling, for any length: linspace(0, n, n) rounded down (0, 1, ..., 14, 16 for 16), within
    the condition. A condition with fewer frames than the video is refused, or, for a `loop`, repeated from its
    start; a single field is constant motion and serves every frame."""
    if 1 < available < num_frames:
        if not loop:
            raise FlowInputError(
                f"the motion condition has {available} frames but {num_frames} frames were asked for: give a "
                f"condition with at least {num_frames} frames, ask for at most {available} frames, or set loop "
                "to repeat it"
            )
        return np.arange(num_frames) % available
    return np.minimum(np.linspace(0, num_frames, num_frames).astype(int), available - 1)


# Upload policy, checked from the container before decoding: real motion videos are short panoramas or flow
# renders; anything outside these bounds is an error or an attack on memory, refused with the reason.
VIDEO_CONTAINERS = {"mov", "mp4", "matroska", "webm", "avi"}
MIN_FRAMES, MAX_FRAMES = 2, 1000
MIN_SIDE, MAX_PIXELS, MAX_ASPECT = 32, 4096 * 2048, 4.0
MAX_DECODED_PIXELS = 2 * 2**30  # decoding work for one upload (about 250 frames at the largest size)


def _size_error(name: str, width: int, height: int) -> FlowInputError | None:
    short, long = sorted((width, height))
    if short < MIN_SIDE or width * height > MAX_PIXELS or long > MAX_ASPECT * short:
        return FlowInputError(
            f"{name}: {width} x {height} is outside the accepted sizes (sides from {MIN_SIDE} px, at most "
            f"{MAX_PIXELS // 2**20} MP, aspect up to {MAX_ASPECT:g}:1); upload a 2:1 panorama like 1024 x 512"
        )
    return None


def check_video_policy(path: str | Path) -> int:
    """Refuse pictures, absurd sizes and frame counts before any frame is decoded; returns the frame count
    (counted by demuxing packets, which costs no decoding). The sizes here are what the container claims: the
    decoders check every frame again (decode_rgb)."""
    name = Path(path).name
    try:
        with open_video(path, MAX_PIXELS) as container:
            if not VIDEO_CONTAINERS & set(container.format.name.split(",")):
                kind = container.format.long_name
                raise FlowInputError(f"{name}: a {kind} file is not a video; upload MP4, WebM or MOV")
            if not container.streams.video:
                raise FlowInputError(f"{name}: has no video stream; upload a flow video (MP4/WebM/MOV)")
            stream = container.streams.video[0]
            if error := _size_error(name, stream.codec_context.width, stream.codec_context.height):
                raise error
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


class _DecodeChecks:
    """What every decoded frame of a motion video must pass (the policy's sizes; 2:1 for a panorama), and the one
    message for a video that breaks them while decoding."""

    def __init__(self, path: str | Path, panorama: bool) -> None:
        self.path, self.name, self.panorama = path, Path(path).name, panorama

    def check(self, index: int, width: int, height: int) -> None:
        if error := _size_error(f"{self.name}: frame {index}", width, height):
            raise error
        if self.panorama and width != 2 * height:
            raise FlowInputError(f"{self.name}: {width} x {height} is not an equirectangular (2:1) panorama")

    def bounds(self) -> dict:
        return {"max_pixels": MAX_PIXELS, "max_decoded_pixels": MAX_DECODED_PIXELS, "check": self.check}

    def refusal(self, exc: CorruptVideo) -> FlowInputError:
        reason = exc.__cause__ or str(exc).removeprefix(f"{self.path}: ")
        return FlowInputError(
            f"{self.name}: not a readable video ({reason}); upload MP4, WebM or MOV whose frames share one size of "
            f"at most {MAX_PIXELS // 2**20} MP"
        )


def decode_rgb(
    path: str | Path, max_frames: int | None = None, size: tuple[int, int] | None = None, panorama: bool = False
) -> list[np.ndarray]:
    """The first `max_frames` frames (all when None) of a video that passes the upload policy, resized to
    size=(H, W) as they are decoded. Every decoded frame is checked against the policy (and, for a `panorama`,
    2:1), whatever the container claimed: a stream that changes size or grows mid-way is refused."""
    count = check_video_policy(path)
    checks = _DecodeChecks(path, panorama)
    try:
        frames = read_frames(path, range(min(count, max_frames or count)), size, **checks.bounds())
    except CorruptVideo as exc:
        raise checks.refusal(exc) from exc
    return list(frames)


def check_every_frame(path: str | Path, panorama: bool = False) -> int:
    """Decode every frame of a video that passes the upload policy (nothing converted or kept) with decode_rgb's
    checks: a stream that changes size, or breaks the policy, at any frame is refused, whatever its container
    and codec, and not only within the frames a first look decodes. Returns the policy's (demuxed) frame count."""
    count = check_video_policy(path)
    checks = _DecodeChecks(path, panorama)
    try:
        check_frames(path, **checks.bounds())
    except CorruptVideo as exc:
        raise checks.refusal(exc) from exc
    return count


def stream_rgb(path: str | Path) -> Iterator[np.ndarray]:
    """Every frame of a video that passes the upload policy, as uint8 (H, W, 3), one decoded frame held at a time
    (scoring a 2048 x 4096 video holds two frames, not the video), checked as `decode_rgb` checks them."""
    check_video_policy(path)
    checks = _DecodeChecks(path, panorama=False)
    try:
        yield from iter_frames(path, **checks.bounds())
    except CorruptVideo as exc:
        raise checks.refusal(exc) from exc


def _to_condition(frames: np.ndarray) -> np.ndarray:
    condition = frames.astype(np.float32)
    condition /= 127.5  # in place: the condition is the largest array a worker builds from an upload
    condition -= 1.0
    return condition.transpose(0, 3, 1, 2)


def read_flow_condition(
    path: str | Path, num_frames: int = 16, height: int = 512, width: int = 1024, loop: bool = False
) -> np.ndarray:
    # the published sampling never reaches past frame num_frames
    frames = decode_rgb(path, num_frames + 1, (height, width))
    if not frames:
        raise FlowInputError(f"{Path(path).name}: the video has no frames")
    return _to_condition(np.stack([frames[i] for i in sample_indices(len(frames), num_frames, loop)]))


def read_panorama_clip(
    path: str | Path, max_frames: int | None = None, size: tuple[int, int] | None = None
) -> list[np.ndarray]:
    frames = decode_rgb(path, max_frames, size, panorama=True)
    if len(frames) < 2:
        raise FlowInputError(f"{Path(path).name}: a clip needs at least 2 frames to copy motion from")
    return frames


def load_flow_condition(
    path: str | Path,
    kind: str,
    num_frames: int,
    height: int,
    width: int,
    backend: FlowBackend | str = "dis",
    loop: bool = False,
) -> np.ndarray:
    """A motion file of the given kind as a flow condition (the published frame sampling for every kind);
    `backend` measures a panorama clip's flow."""
    if kind == "flow_video":
        return read_flow_condition(path, num_frames, height, width, loop)
    if kind == "raw_flow":  # only the sampled fields are read, each resized as it is read
        flow = read_raw_flow(path, lambda count: sample_indices(count, num_frames, loop), (height, width))
    elif kind == "panorama_clip":
        frames = read_panorama_clip(path, num_frames + 2, (height, width))  # sampled flows reach frame num_frames + 1
        flow = extract_flow(np.stack(frames), backend)
        flow = resize_flow(flow[sample_indices(len(flow), num_frames, loop)], height, width)
    else:
        raise FlowInputError(f"unknown motion kind {kind!r}; use one of {', '.join(FLOW_KINDS)}")
    return _to_condition(np.stack([encode_flow(field) for field in flow]))  # per field: float64 temporaries stay small


def motion_length(path: str | Path, kind: str) -> int:
    """How many motion fields a file offers to the published sampling (what `sample_indices` sees as available):
    a raw flow's header says; a video's frames are counted by demuxing, and every one of them is decoded and
    checked (`check_every_frame`), so what passes here is what a worker can read. A clip of n frames holds n - 1
    flows."""
    if kind == "raw_flow":
        return raw_flow_count(path)
    frames = check_every_frame(path, panorama=kind == "panorama_clip")
    return frames - 1 if kind == "panorama_clip" else frames


CHECK_SIZE = (8, 64, 128)  # frames, height, width decoded to check a motion file: cheap, and every reader runs


def check_motion_file(path: str | Path, kind: str) -> int:
    """Decode a motion file the way a job will read it, at a small size (every reader's checks run: a broken or
    lying file fails here, not in a job), and return how many motion fields it offers. Any length passes here
    (as for a loop); the request's frames are checked against the count."""
    load_flow_condition(path, kind, *CHECK_SIZE, loop=True)
    return motion_length(path, kind)
