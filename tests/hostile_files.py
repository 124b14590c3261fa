"""Hostile motion uploads made by the tests: broken, lying or absurd files that must each be refused with a
reason (4xx), never crash a worker, never be enqueued. Used by the media, service and reliability tests and by
benchmarks/reliability_figures.py."""

from __future__ import annotations

import hashlib
import io
import os
import struct
import subprocess
import zipfile
import zlib
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


def _zip_of_zeros(name: str, head: bytes, zeros: int, declared: int | None = None) -> bytes:
    """A valid zip whose one member is `head` then `zeros` zero bytes (multiple of 1 MiB), deflated by repeating
    one flushed block, so a gigabyte bomb costs milliseconds to make; `declared` replaces the uncompressed size
    written in the central directory (a directory that understates what the member inflates to)."""
    return zip_of_repeats(name, head, bytes(1 << 20), zeros >> 20, declared)


def zip_of_repeats(name: str, head: bytes, chunk: bytes, repeats: int, declared: int | None = None) -> bytes:
    """A valid zip whose one member is `head` then `chunk` `repeats` times, deflated by repeating one flushed
    block (made in milliseconds however large); `declared`: see _zip_of_zeros."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = compressor.compress(head) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)  # history reset: every block alike
    data = first + block * repeats + b"\x03\x00"  # then an empty final block
    crc = zlib.crc32(head)
    for _ in range(repeats):
        crc = zlib.crc32(chunk, crc)
    size, encoded = len(head) + len(chunk) * repeats, name.encode()
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 33, crc, len(data), size, len(encoded), 0)
    entry = struct.pack(
        "<4s6H3L5H2L",
        b"PK\x01\x02",
        20,
        20,
        0,
        8,
        0,
        33,
        crc,
        len(data),
        declared or size,
        len(encoded),
        0,
        0,
        0,
        0,
        0,
        0,
    )
    directory = entry + encoded
    offset = len(local) + len(encoded) + len(data)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(directory), offset, 0)
    return local + encoded + data + directory + end


def flow_at_the_bounds(path: Path, frames: int = 16) -> Path:
    """A legal raw flow as large as the upload check allows: `frames` fields of 8 MP (4096 x 2048, float32,
    1 GiB for 16) in a .npz compressed about 140:1 (below the zip-bomb ratio), a 7.6 MB upload for 16 fields."""
    from models.media.raw_flow import MAX_FIELD_PIXELS

    values = np.zeros(2**18, np.float32)  # 1 MiB: a few varied values among zeros set the compression ratio
    values[::128] = np.random.default_rng(0).integers(-64, 64, len(values[::128]))
    field_chunks = MAX_FIELD_PIXELS * 2 * 4 // values.nbytes
    path.write_bytes(
        zip_of_repeats("flow.npy", _npy_head((frames, 2048, 4096, 2)), values.tobytes(), frames * field_chunks)
    )
    return path


def _npy_head(shape: tuple[int, ...]) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def _many_members(count: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("flow.npy", _npy_bytes(np.zeros((2, 8, 16, 2), np.float32)))
        for i in range(count):
            archive.writestr(f"{i}", b"")
    return buffer.getvalue()


def _huge_npy_header() -> bytes:
    """A version 2 .npy whose header length field claims 4 GB."""
    return b"\x93NUMPY\x02\x00" + struct.pack("<I", 0xFFFFFFF0) + b"{'descr': '<f4'" + b" " * 64


def join_videos(out: Path, parts: list[tuple[str, int, tuple[str, ...]]]) -> None:
    """Videos of different sizes (size, frames, encoder args) joined without re-encoding into `out`: the
    container header states the first part's size, the stream changes size mid-way."""
    listing = out.with_name("parts.txt")
    names = []
    for i, (size, frames, codec) in enumerate(parts):
        part = out.with_name(f"part{i}{out.suffix}")
        _ffmpeg(part, "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=8", "-frames:v", str(frames), *codec)
        names.append(f"file '{part.name}'")
    listing.write_text("\n".join(names) + "\n")
    _ffmpeg(out, "-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy")


def _grown_h264(out: Path) -> None:
    """128 x 64 H.264 whose third frame is 4096 x 3072 (above the policy's 8 MP): a new in-band SPS that the MP4
    header does not mention."""
    joined = out.with_name("joined.h264")
    with joined.open("wb") as stream:
        for i, source in enumerate(("testsrc2=size=128x64:rate=8", "color=black:size=4096x3072:rate=8")):
            part = out.with_name(f"part{i}.h264")
            _ffmpeg(part, "-f", "lavfi", "-i", source, "-frames:v", "2", "-c:v", "libx264", "-preset", "ultrafast")
            stream.write(part.read_bytes())
    _ffmpeg(out, "-f", "h264", "-i", str(joined), "-c", "copy")


def _jpeg_size_lie(out: Path) -> None:
    """A 128 x 64 MJPEG AVI whose every JPEG start-of-frame declares 16000 x 16000 (a decoder allocation bomb)."""
    clean = out.with_name("clean.avi")
    _ffmpeg(clean, "-f", "lavfi", "-i", "testsrc2=size=128x64:rate=8", "-frames:v", "8", "-c:v", "mjpeg")
    data = clean.read_bytes().replace(b"\xff\xc0\x00\x11\x08\x00\x40\x00\x80", b"\xff\xc0\x00\x11\x08\x3e\x80\x3e\x80")
    assert data != clean.read_bytes(), "no baseline JPEG header found"
    out.write_bytes(data)


def _vp9_size_lie(out: Path) -> None:
    """A 128 x 64 WebM whose VP9 key frame declares 16384 x 16384 (the 16-bit sizes after the sync code)."""
    clean = out.with_name("clean.webm")
    _ffmpeg(clean, "-f", "lavfi", "-i", "testsrc2=size=128x64:rate=8", "-frames:v", "4", *VP9)
    data = bytearray(clean.read_bytes())
    at = data.index(b"\x49\x83\x42") + 3  # profile 0: 4 colour bits, then width - 1 and height - 1
    bits = int.from_bytes(data[at : at + 5], "big") & ~(0xFFFFFFFF << 4) | (16383 << 20) | (16383 << 4)
    data[at : at + 5] = bits.to_bytes(5, "big")
    out.write_bytes(bytes(data))


Maker = Callable[[Path], bytes]
VP9 = ("-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8")
AV1 = ("-c:v", "libsvtav1", "-preset", "12")
MJPEG = ("-c:v", "mjpeg")


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
        (
            Hostile("bomb.npz", "raw_flow", "zip bomb: 1 MB inflating to a 1.2 GiB array"),
            lambda tmp: _zip_of_zeros("flow.npy", _npy_head((300, 512, 1024, 2)), 300 << 22),
        ),
        (
            Hostile("ratio.npz", "raw_flow", "a member compressed 1000:1 (240 MiB from 240 kB)"),
            lambda tmp: _zip_of_zeros("flow.npy", _npy_head((60, 512, 1024, 2)), 60 << 22),
        ),
        (
            Hostile("understated.npz", "raw_flow", "central directory says 4 kB, the member inflates to 64 MiB"),
            lambda tmp: _zip_of_zeros("flow.npy", _npy_head((4, 8, 16, 2)), 64 << 20, declared=4096 + 128),
        ),
        (
            Hostile("header-bomb.npz", "raw_flow", "member whose array header declares 6 TB over a few bytes"),
            lambda tmp: _zip_with("flow.npy", _lying_npy_header((100000, 100000, 1000, 2))),
        ),
        (Hostile("members.npz", "raw_flow", "an archive of 5000 members"), lambda tmp: _many_members(5000)),
        (Hostile("long-header.npy", "raw_flow", "a .npy header length of 4 GB"), lambda tmp: _huge_npy_header()),
        (
            Hostile("grow-h264.mp4", "flow_video", "128 x 64 in the header, 4096 x 3072 from frame 2"),
            file_from(lambda out: _grown_h264(out.with_suffix(".mp4"))),
        ),
        (
            Hostile("grow-mjpeg.avi", "flow_video", "MJPEG 128 x 64, then 2048 x 1024 frames"),
            file_from(
                lambda out: join_videos(out.with_suffix(".avi"), [("128x64", 2, MJPEG), ("2048x1024", 2, MJPEG)])
            ),
        ),
        (
            Hostile("late-growth.mkv", "flow_video", "MJPEG 128 x 64, then 512 x 256 from frame 12"),
            file_from(lambda out: join_videos(out.with_suffix(".mkv"), [("128x64", 12, MJPEG), ("512x256", 6, MJPEG)])),
        ),
        (
            Hostile("grow-vp9.webm", "flow_video", "VP9 128 x 64, then 1024 x 512 frames"),
            file_from(lambda out: join_videos(out.with_suffix(".webm"), [("128x64", 3, VP9), ("1024x512", 2, VP9)])),
        ),
        (
            Hostile("grow-av1.mkv", "panorama_clip", "AV1 128 x 64, then 1024 x 512 frames"),
            file_from(lambda out: join_videos(out.with_suffix(".mkv"), [("128x64", 3, AV1), ("1024x512", 2, AV1)])),
        ),
        (
            Hostile("sof-lie.avi", "flow_video", "MJPEG frames declaring 16000 x 16000 in a 128 x 64 AVI"),
            file_from(lambda out: _jpeg_size_lie(out.with_suffix(".avi"))),
        ),
        (
            Hostile("huge-vp9.webm", "flow_video", "VP9 key frame declaring 16384 x 16384 in a 128 x 64 WebM"),
            file_from(lambda out: _vp9_size_lie(out.with_suffix(".webm"))),
        ),
        (
            Hostile("many-frames.mkv", "flow_video", "1500 tiny VP9 frames"),
            file_from(lambda out: join_videos(out.with_suffix(".mkv"), [("64x32", 1500, VP9)])),
        ),
        (
            Hostile("long-1fps.mp4", "flow_video", "20 minutes at 1 frame per second"),
            file_from(lambda out: _video(out.with_suffix(".mp4"), "64x32", 1200, 1, "-preset", "ultrafast")),
        ),
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
        path.write_bytes(_made(hostile.name, maker, scratch))
        made.append((hostile, path))
    return made


# Made files are kept (ignored by git) under the digest of this module: making the set runs ffmpeg ~40 times, and
# several tests and the benchmark use it; a change here makes a fresh set.
CACHE = Path(__file__).resolve().parents[1] / "test-artifacts" / "hostile-files"
CACHE /= hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def _made(name: str, maker: Maker, scratch: Path) -> bytes:
    cached = CACHE / name
    if not cached.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = cached.with_name(f".{name}.{os.getpid()}")
        partial.write_bytes(maker(scratch))
        partial.replace(cached)  # whole files only, even with tests running side by side
    return cached.read_bytes()
