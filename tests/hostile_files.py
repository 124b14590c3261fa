"""Hostile motion uploads made by the tests: broken, lying or absurd files that must each be refused with a
reason (4xx), never crash a worker, never be enqueued. Used by the media, service and reliability tests and by
benchmarks/reliability_figures.py."""

from __future__ import annotations

import io
import struct
import subprocess
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Hostile:
    name: str  # upload file name, suffix included
    kind: str  # the upload's declared kind: flow_video, raw_flow or panorama_clip
    why: str


def _ffmpeg(out: Path, *args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args, str(out)], check=True, capture_output=True, timeout=60)


def _video(out: Path, size: str = "64x32", frames: int = 16, rate: int = 8, *extra: str) -> None:
    _ffmpeg(
        out,
        *("-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}"),
        *("-frames:v", str(frames), "-c:v", "libx264", "-pix_fmt", "yuv420p", *extra),
    )


def _valid_mp4(tmp: Path) -> bytes:
    path = tmp / "valid-source.mp4"
    if not path.exists():  # moov first, so a broken moov cannot be skipped over to reach the samples
        _video(path, "64x32", 16, 8, "-movflags", "+faststart")
    return path.read_bytes()


# FFmpeg recovers every frame from a moov whose size runs past the end of the file, or from a file whose moov
# box is renamed (it scans on): those decode correctly, so they are not in the list.
def _patch_box_size(data: bytes, box: bytes, new_size: int) -> bytes:
    at = data.index(box) - 4
    return data[:at] + struct.pack(">I", new_size) + data[at + 4 :]


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def _lying_npy_header(shape: tuple[int, ...]) -> bytes:
    """A .npy whose header declares a gigantic array over a few bytes of data (an allocation bomb)."""
    header = {"descr": "<f4", "fortran_order": False, "shape": shape}
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + b"\0" * 64


def _flo(width: int, height: int, payload: bytes, magic: float = 202021.25) -> bytes:
    return struct.pack("<fii", magic, width, height) + payload


def _zip_with(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


Maker = Callable[[Path], bytes]


def _makers() -> list[tuple[Hostile, Maker]]:
    def file_from(fn: Callable[[Path], None]) -> Maker:
        def make(tmp: Path) -> bytes:
            out = tmp / "made"
            for old in tmp.glob("made*"):
                old.unlink()
            fn(out)
            return next(tmp.glob("made*")).read_bytes()

        return make

    def video_of(suffix: str, *args: str) -> Maker:
        return file_from(lambda out: _ffmpeg(out.with_suffix(suffix), *args))

    lavfi_video = ("-f", "lavfi", "-i", "testsrc2=size=64x32:rate=8")
    lavfi_audio = ("-f", "lavfi", "-i", "sine=frequency=440:duration=1")
    flow = np.zeros((4, 8, 16, 2), np.float32)
    return [
        (Hostile("empty.mp4", "flow_video", "zero-length file"), lambda tmp: b""),
        (Hostile("head.mp4", "flow_video", "truncated to 200 bytes"), lambda tmp: _valid_mp4(tmp)[:200]),
        (
            Hostile("half.mp4", "flow_video", "truncated to half"),
            lambda tmp: _valid_mp4(tmp)[: len(_valid_mp4(tmp)) // 2],
        ),
        (Hostile("text.mp4", "flow_video", "plain text named .mp4"), lambda tmp: b"this is not a video\n" * 50),
        (Hostile("random.mp4", "flow_video", "random bytes"), lambda tmp: np.random.default_rng(0).bytes(4096)),
        (
            Hostile("html.webm", "flow_video", "an HTML page"),
            lambda tmp: b"<!doctype html><html><body>hi</body></html>",
        ),
        (Hostile("image.mp4", "flow_video", "a PNG picture"), video_of(".png", *lavfi_video, "-frames:v", "1")),
        (
            Hostile("still.mov", "flow_video", "a JPEG picture named .mov"),
            video_of(".jpg", *lavfi_video, "-frames:v", "1"),
        ),
        (
            Hostile("anim.mp4", "flow_video", "an animated GIF named .mp4"),
            video_of(".gif", *lavfi_video, "-frames:v", "8"),
        ),
        (Hostile("audio.mp4", "flow_video", "audio only (AAC in MP4)"), video_of(".mp4", *lavfi_audio, "-c:a", "aac")),
        (
            Hostile("audio.webm", "flow_video", "audio only (Opus in WebM)"),
            video_of(".webm", *lavfi_audio, "-c:a", "libopus"),
        ),
        (Hostile("wav.mov", "flow_video", "a WAV file named .mov"), video_of(".wav", *lavfi_audio)),
        (
            Hostile("one-frame.mp4", "flow_video", "a single frame"),
            file_from(lambda out: _video(out.with_suffix(".mp4"), frames=1)),
        ),
        (
            Hostile("thousands.mp4", "flow_video", "thousands of frames"),
            file_from(lambda out: _video(out.with_suffix(".mp4"), "16x8", 5000, 1000, "-preset", "ultrafast")),
        ),
        (
            Hostile("sliver.mp4", "flow_video", "absurd dimensions 4096 x 16"),
            file_from(lambda out: _video(out.with_suffix(".mp4"), "4096x16", 16, 8, "-preset", "ultrafast")),
        ),
        (
            Hostile("square.mp4", "panorama_clip", "a 64 x 64 clip is not a 2:1 panorama"),
            file_from(lambda out: _video(out.with_suffix(".mp4"), "64x64", 17)),
        ),
        (
            Hostile("portrait.mp4", "panorama_clip", "a 32 x 64 clip is not a 2:1 panorama"),
            file_from(lambda out: _video(out.with_suffix(".mp4"), "32x64", 17)),
        ),
        (
            Hostile("moov-tiny.mp4", "flow_video", "moov box size 3 (corrupt header)"),
            lambda tmp: _patch_box_size(_valid_mp4(tmp), b"moov", 3),
        ),
        (
            Hostile("ftyp-only.mp4", "flow_video", "only the ftyp box"),
            lambda tmp: _valid_mp4(tmp)[: struct.unpack(">I", _valid_mp4(tmp)[:4])[0]],
        ),
        (
            Hostile("flow.npy", "raw_flow", "three channels instead of two"),
            lambda tmp: _npy_bytes(np.zeros((4, 8, 16, 3), np.float32)),
        ),
        (
            Hostile("nan.npy", "raw_flow", "NaN values"),
            lambda tmp: _npy_bytes(np.full((4, 8, 16, 2), np.nan, np.float32)),
        ),
        (
            Hostile("inf.npy", "raw_flow", "infinite values"),
            lambda tmp: _npy_bytes(np.full((4, 8, 16, 2), np.inf, np.float32)),
        ),
        (
            Hostile("pickle.npy", "raw_flow", "a pickled object array"),
            lambda tmp: _npy_bytes(np.array([{"a": 1}], dtype=object)),
        ),
        (
            Hostile("noframes.npy", "raw_flow", "zero frames"),
            lambda tmp: _npy_bytes(np.zeros((0, 8, 16, 2), np.float32)),
        ),
        (Hostile("strings.npy", "raw_flow", "an array of strings"), lambda tmp: _npy_bytes(np.array(["a", "b"]))),
        (
            Hostile("bomb.npy", "raw_flow", "header declares a gigantic array"),
            lambda tmp: _lying_npy_header((100000, 100000, 1000, 2)),
        ),
        (Hostile("truncated.npy", "raw_flow", "data shorter than the header says"), lambda tmp: _npy_bytes(flow)[:200]),
        (
            Hostile("empty.npz", "raw_flow", "an archive with no arrays"),
            lambda tmp: _zip_with("readme.txt", b"nothing"),
        ),
        (
            Hostile("pickle.npz", "raw_flow", "an archive holding a pickled array"),
            lambda tmp: _zip_with("flow.npy", _npy_bytes(np.array([{"a": 1}], dtype=object))),
        ),
        (Hostile("corrupt.npz", "raw_flow", "not a zip archive"), lambda tmp: b"PK\x03\x04" + b"\xff" * 100),
        (
            Hostile("magic.flo", "raw_flow", "wrong .flo magic number"),
            lambda tmp: _flo(16, 8, b"\0" * 16 * 8 * 8, magic=1.0),
        ),
        (
            Hostile("short.flo", "raw_flow", ".flo data shorter than its header says"),
            lambda tmp: _flo(16, 8, b"\0" * 100),
        ),
        (
            Hostile("huge.flo", "raw_flow", ".flo header declares 100000 x 100000"),
            lambda tmp: _flo(100000, 100000, b"\0" * 64),
        ),
        (Hostile("negative.flo", "raw_flow", ".flo header with negative size"), lambda tmp: _flo(-16, 8, b"\0" * 64)),
        (Hostile("video.npy", "raw_flow", "a video uploaded as raw flow"), lambda tmp: _valid_mp4(tmp)),
    ]


HOSTILE: list[Hostile] = [hostile for hostile, _ in _makers()]


def make_hostile_files(folder: Path) -> list[tuple[Hostile, Path]]:
    """Write every hostile file into `folder`; returns (description, path) pairs."""
    folder.mkdir(parents=True, exist_ok=True)
    scratch = folder / ".scratch"
    scratch.mkdir(exist_ok=True)
    made = []
    for hostile, maker in _makers():
        path = folder / hostile.name
        path.write_bytes(maker(scratch))
        made.append((hostile, path))
    return made
