"""Small helpers the tests share: reading CLI output and asking ffmpeg/ffprobe about videos."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

# The published 360DVD reference data the tests use, copied into the repository (origins in its README.md).
REFERENCE = Path(__file__).resolve().parent / "fixtures" / "360dvd"
EXAMPLE_FLOW = REFERENCE / "example_flow_100541.mp4"


def plain(output: str) -> str:
    """Typer's error box without its frame and line wrapping."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", output).split())


def last_json(output: str) -> dict:
    """The JSON summary a command prints last (after any progress bar on the same line); it may nest objects."""
    line = output.strip().splitlines()[-1].split("\r")[-1]
    return json.loads(line[line.index("{") :])


def decoded_md5(path: Path) -> str:
    """md5 of the decoded pictures: equal before and after a metadata edit, unless chunk offsets broke."""
    done = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:v", "-f", "md5", "-"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.strip()


def video_stream(path: Path) -> dict:
    """ffprobe's description of the first video stream, frames counted."""
    done = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_streams",
            "-count_frames",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(done.stdout)["streams"][0]


def spherical_side_data(path: Path) -> dict | None:
    side = video_stream(path).get("side_data_list", [])
    return next((s for s in side if s.get("side_data_type") == "Spherical Mapping"), None)
