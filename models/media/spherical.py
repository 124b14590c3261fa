"""Spherical-video metadata for equirectangular H.264 MP4s, written by our own small box editor.

Players look for two things (ffmpeg cannot write either): V1, a `uuid` box in the video track holding the
GSpherical XML, and V2, `st3d` + `sv3d` boxes inside the H.264 sample entry. Adding boxes grows `moov`, so every
parent size is recomputed, and when `moov` precedes the media data every chunk offset (stco/co64) of every
track is shifted by the growth; otherwise the video would decode garbage. Re-muxing with ffmpeg drops these
boxes, so injection is always the last step.
"""

from __future__ import annotations

import os
import struct
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from models.media.errors import VideoFileError

SPHERICAL_UUID = uuid.UUID("ffcc8263-f855-4a93-8814-587a02521fdd").bytes
SOFTWARE = "dvd360"
V1_XML = (
    '<?xml version="1.0"?><rdf:SphericalVideo xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
    'xmlns:GSpherical="http://ns.google.com/videos/1.0/spherical/">'
    "<GSpherical:Spherical>true</GSpherical:Spherical><GSpherical:Stitched>true</GSpherical:Stitched>"
    f"<GSpherical:StitchingSoftware>{SOFTWARE}</GSpherical:StitchingSoftware>"
    "<GSpherical:ProjectionType>equirectangular</GSpherical:ProjectionType></rdf:SphericalVideo>"
).encode()
CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd", b"avc1", b"sv3d", b"proj"}
# bytes of fixed fields before the child boxes: stsd (version/flags + entry count), avc1 (visual sample entry)
PREFIX = {b"stsd": 8, b"avc1": 78}


@dataclass
class Box:
    type: bytes
    payload: bytes = b""  # leaves: everything after the header; containers: the fixed fields before children
    children: list[Box] = field(default_factory=list)

    def find(self, kind: bytes) -> Box | None:
        return next((c for c in self.children if c.type == kind), None)

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()

    def to_bytes(self) -> bytes:
        body = self.payload + b"".join(c.to_bytes() for c in self.children)
        if len(body) + 8 <= 0xFFFFFFFF:
            return struct.pack(">I4s", len(body) + 8, self.type) + body
        return struct.pack(">I4sQ", 1, self.type, len(body) + 16) + body


def _full_box(kind: bytes, body: bytes) -> Box:
    return Box(kind, b"\0\0\0\0" + body)  # version 0, flags 0


def _headers(data: bytes, start: int, end: int):
    """(type, box start, payload start, box end) of consecutive boxes in data[start:end]."""
    pos = start
    while pos < end:
        if end - pos < 8:
            raise VideoFileError("truncated MP4: a box header runs past its parent")
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            if end - pos < 16:
                raise VideoFileError("truncated MP4: a 64-bit box header runs past its parent")
            (size,) = struct.unpack_from(">Q", data, pos + 8)
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise VideoFileError(f"corrupt or truncated MP4: box {kind!r} at {pos} claims {size} bytes")
        yield kind, pos, pos + header, pos + size
        pos += size


def _parse(data: bytes, kind: bytes, start: int, end: int) -> Box:
    if kind not in CONTAINERS:
        return Box(kind, data[start:end])
    prefix = PREFIX.get(kind, 0)
    children = [_parse(data, k, body, stop) for k, _, body, stop in _headers(data, start + prefix, end)]
    return Box(kind, data[start : start + prefix], children)


def _video_track(moov: Box) -> Box:
    for trak in (c for c in moov.children if c.type == b"trak"):
        hdlr = trak.find(b"mdia") and trak.find(b"mdia").find(b"hdlr")
        if hdlr is not None and hdlr.payload[8:12] == b"vide":
            return trak
    raise VideoFileError("the MP4 has no video track")


def _sample_entry(trak: Box) -> Box:
    stsd = trak.find(b"mdia").find(b"minf").find(b"stbl").find(b"stsd")
    entry = stsd.children[0] if stsd is not None and stsd.children else None
    if entry is None or entry.type != b"avc1":
        found = entry.type.decode("latin-1") if entry is not None else "nothing"
        raise VideoFileError(f"spherical metadata is written for H.264 (avc1) video only; this track holds {found}")
    return entry


def _shift_chunk_offsets(moov: Box, delta: int) -> None:
    for box in moov.walk():
        if box.type in (b"stco", b"co64"):
            (count,) = struct.unpack_from(">I", box.payload, 4)
            fmt = f">{count}{'I' if box.type == b'stco' else 'Q'}"
            offsets = [o + delta for o in struct.unpack_from(fmt, box.payload, 8)]
            box.payload = box.payload[:8] + struct.pack(fmt, *offsets)


def spherical_boxes() -> tuple[Box, Box, Box]:
    """(V1 uuid box for the track, V2 st3d and sv3d for the sample entry): mono, full-sphere equirectangular."""
    v1 = Box(b"uuid", SPHERICAL_UUID + V1_XML)
    st3d = _full_box(b"st3d", b"\0")  # stereo mode 0: monoscopic
    prhd = _full_box(b"prhd", struct.pack(">iii", 0, 0, 0))  # yaw, pitch, roll (16.16 fixed point)
    equi = _full_box(b"equi", struct.pack(">IIII", 0, 0, 0, 0))  # no cropping: the whole sphere
    sv3d = Box(b"sv3d", children=[_full_box(b"svhd", SOFTWARE.encode() + b"\0"), Box(b"proj", children=[prhd, equi])])
    return v1, st3d, sv3d


def inject_spherical(src: str | Path, dst: str | Path, fix_offsets: bool = True) -> Path:
    """Copy `src` to `dst` with V1 and V2 equirectangular metadata (replacing any already there), atomically.

    `fix_offsets=False` exists only so tests can show that unshifted chunk offsets break decoding.
    """
    src, dst = Path(src), Path(dst)
    data = src.read_bytes()
    top = list(_headers(data, 0, len(data)))
    kinds = [k for k, *_ in top]
    if b"moof" in kinds:
        raise VideoFileError(f"{src.name}: fragmented MP4 is not supported; re-encode it as a regular MP4")
    if b"moov" not in kinds:
        raise VideoFileError(f"{src.name}: not an MP4 (no moov box)")
    _, moov_start, moov_body, moov_end = top[kinds.index(b"moov")]
    moov = _parse(data, b"moov", moov_body, moov_end)
    if moov.find(b"mvex") is not None:
        raise VideoFileError(f"{src.name}: fragmented MP4 is not supported; re-encode it as a regular MP4")

    trak = _video_track(moov)
    entry = _sample_entry(trak)
    v1, st3d, sv3d = spherical_boxes()
    trak.children = [c for c in trak.children if not (c.type == b"uuid" and c.payload[:16] == SPHERICAL_UUID)] + [v1]
    entry.children = [c for c in entry.children if c.type not in (b"st3d", b"sv3d")] + [st3d, sv3d]

    new_moov = moov.to_bytes()
    media_after_moov = any(k == b"mdat" and start > moov_start for k, start, *_ in top)
    if fix_offsets and media_after_moov:
        _shift_chunk_offsets(moov, len(new_moov) - (moov_end - moov_start))
        new_moov = moov.to_bytes()

    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".mp4", prefix=f".{dst.stem}-", dir=dst.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; results are served and shared
        with os.fdopen(fd, "wb") as out:
            out.write(data[:moov_start])
            out.write(new_moov)
            out.write(data[moov_end:])
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dst
