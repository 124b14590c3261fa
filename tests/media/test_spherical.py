"""Spherical metadata checked with the real tools: ffprobe's side data, exiftool's XMP-GSpherical tags, and
the decoded pictures' md5 unchanged by injection (which catches chunk offsets left unshifted)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from models.media.errors import VideoFileError
from models.media.spherical import inject_spherical
from models.media.video_writer import write_video
from tests.tools import decoded_md5, spherical_side_data

FRAMES = (np.random.default_rng(1).random((6, 64, 128, 3)) * 255).astype(np.uint8)


def run(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True, timeout=60).stdout


@pytest.fixture(params=["moov-first", "moov-last"])
def plain_mp4(request, tmp_path) -> Path:
    """A source written by ffmpeg itself, in either layout."""
    src = write_video(FRAMES, tmp_path / "frames.mp4", spherical=False)
    out = tmp_path / f"{request.param}.mp4"
    flags = ["-movflags", "+faststart"] if request.param == "moov-first" else []
    run("ffmpeg", "-v", "error", "-i", str(src), "-c", "copy", *flags, str(out))
    data = out.read_bytes()
    assert (data.index(b"moov") < data.index(b"mdat")) == (request.param == "moov-first")
    return out


def test_players_see_equirectangular_and_pictures_are_untouched(plain_mp4, tmp_path) -> None:
    assert spherical_side_data(plain_mp4) is None
    out = inject_spherical(plain_mp4, tmp_path / "360.mp4")
    side = spherical_side_data(out)
    assert side is not None and side["projection"] == "equirectangular", side
    assert decoded_md5(out) == decoded_md5(plain_mp4)
    tags = json.loads(run("exiftool", "-j", "-G1", "-XMP-GSpherical:all", str(out)))[0]
    assert tags["XMP-GSpherical:ProjectionType"] == "equirectangular"
    assert tags["XMP-GSpherical:Spherical"] is True and tags["XMP-GSpherical:Stitched"] is True
    assert tags["XMP-GSpherical:StitchingSoftware"] == "dvd360"


def test_injecting_twice_keeps_one_set_of_boxes(plain_mp4, tmp_path) -> None:
    once = inject_spherical(plain_mp4, tmp_path / "once.mp4")
    twice = inject_spherical(once, tmp_path / "twice.mp4")
    assert once.read_bytes() == twice.read_bytes()
    assert twice.read_bytes().count(b"sv3d") == 1


def test_md5_check_catches_unshifted_chunk_offsets(tmp_path) -> None:
    src = write_video(FRAMES, tmp_path / "first.mp4", spherical=False)  # moov first: offsets must move
    broken = inject_spherical(src, tmp_path / "broken.mp4", fix_offsets=False)
    result = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(broken), "-map", "0:v", "-f", "md5", "-"], capture_output=True, text=True
    )
    assert result.returncode != 0 or result.stdout.strip() != decoded_md5(src)


def test_writer_output_is_spherical(tmp_path) -> None:
    out = write_video(FRAMES, tmp_path / "result.mp4")
    assert spherical_side_data(out)["projection"] == "equirectangular"
    assert [p.name for p in tmp_path.iterdir()] == ["result.mp4"]


def test_fragmented_and_non_h264_files_are_refused(tmp_path) -> None:
    src = write_video(FRAMES, tmp_path / "src.mp4", spherical=False)
    fragmented = tmp_path / "fragmented.mp4"
    run("ffmpeg", "-v", "error", "-i", str(src), "-c", "copy", "-movflags", "frag_keyframe+empty_moov", str(fragmented))
    with pytest.raises(VideoFileError, match="fragmented"):
        inject_spherical(fragmented, tmp_path / "out.mp4")
    mpeg4 = tmp_path / "mpeg4.mp4"
    run("ffmpeg", "-v", "error", "-i", str(src), "-c:v", "mpeg4", str(mpeg4))
    with pytest.raises(VideoFileError, match=r"H\.264 .* holds mp4v"):
        inject_spherical(mpeg4, tmp_path / "out.mp4")
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(src.read_bytes()[:300])
    with pytest.raises(VideoFileError, match="truncated"):
        inject_spherical(truncated, tmp_path / "out.mp4")
    assert not (tmp_path / "out.mp4").exists()
