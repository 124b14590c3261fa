"""A video whose frames change size is refused at upload, whatever its container and codec, however late the change
(issue 28, item 18): the upload check (`load_flow_condition` at the API's small size, then `motion_length`, as
api/uploads.py calls them) decodes every frame, not only the first few a worker's condition starts with."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from models.media.errors import FlowInputError
from models.media.flow_video import load_flow_condition, motion_length
from tests.hostile_files import VP9, join_videos
from tests.hostile_memory import CHECK_SIZE

SIZES = [(128, 64)] * 12 + [(256, 128)] * 6  # grows at frame 12: past the 9 frames the first look decodes
CHANGED = "frame 12 is 256 x 128 but the video starts at 128 x 64"


def mjpeg(path: Path, sizes: list[tuple[int, int]]) -> Path:
    """Motion JPEG written packet by packet (each JPEG at its own size) into the container `path` names."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mjpeg", rate=8)
        stream.width, stream.height = sizes[0]
        stream.pix_fmt = "yuvj420p"
        for i, (width, height) in enumerate(sizes):
            picture = np.random.default_rng(i).integers(0, 255, (height, width, 3), np.uint8)
            packet = av.Packet(cv2.imencode(".jpg", picture)[1].tobytes())
            packet.stream, packet.pts, packet.dts, packet.time_base = stream, i, i, Fraction(1, 8)
            out.mux(packet)
    return path


def upload_check(path: Path, kind: str) -> int:
    load_flow_condition(path, kind, *CHECK_SIZE, loop=True)
    return motion_length(path, kind)


@pytest.mark.parametrize("kind", ["flow_video", "panorama_clip"])
@pytest.mark.parametrize("suffix", [".avi", ".mkv", ".mov", ".mp4"])
def test_mjpeg_whose_frames_grow_late_is_refused_at_upload(tmp_path, suffix, kind) -> None:
    path = mjpeg(tmp_path / f"late{suffix}", SIZES)
    load_flow_condition(path, kind, *CHECK_SIZE, loop=True)  # the first frames alone look fine
    with pytest.raises(FlowInputError, match=CHANGED):
        motion_length(path, kind)
    steady = mjpeg(tmp_path / f"steady{suffix}", [SIZES[0]] * len(SIZES))
    assert upload_check(steady, kind) == len(SIZES) - (kind == "panorama_clip")


@pytest.mark.parametrize(
    ("suffix", "codec"),
    [(".webm", VP9), (".mp4", ("-c:v", "libx264", "-preset", "ultrafast"))],
    ids=["vp9-webm", "h264-mp4"],
)
def test_other_codecs_whose_frames_grow_late_are_refused_at_upload(tmp_path, suffix, codec) -> None:
    path = tmp_path / f"late{suffix}"
    join_videos(path, [("128x64", 12, codec), ("256x128", 6, codec)])
    with pytest.raises(FlowInputError, match=CHANGED):
        upload_check(path, "flow_video")
