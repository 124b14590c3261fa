"""The flow-video reader on the authors' example, and the MP4 writer checked with ffprobe."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from models.media.errors import FlowInputError
from models.media.flow_video import load_flow_condition, read_flow_condition, sample_indices
from models.media.video_writer import write_video

EXAMPLE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "360dvd" / "example_flow_100541.mp4"


def ffprobe(path: Path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-count_frames", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def test_published_sampling_indices() -> None:
    assert sample_indices(100, 16).tolist() == [*range(15), 16]
    assert sample_indices(5, 8).max() == 4  # short videos repeat their last frame


def test_authors_example_decodes_to_the_pipeline_tensor() -> None:
    condition = read_flow_condition(EXAMPLE, num_frames=16, height=512, width=1024)
    assert condition.shape == (16, 3, 512, 1024) and condition.dtype == np.float32
    assert condition.min() >= -1.0 and condition.max() <= 1.0
    with av.open(str(EXAMPLE)) as container:
        frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(17), container.decode(video=0), strict=False)]
    # index 15 of the condition is video frame 16 (the published linspace rounding), channels in RGB order
    np.testing.assert_allclose((condition[15].transpose(1, 2, 0) + 1) * 127.5, frames[16], atol=0.51)
    assert np.abs(condition[15] - condition[14]).mean() > 0  # frames differ: a moving camera


def test_not_a_video_is_refused(tmp_path) -> None:
    bad = tmp_path / "flow.mp4"
    bad.write_text("not a video")
    with pytest.raises(FlowInputError, match="not a readable video"):
        read_flow_condition(bad)
    with pytest.raises(FlowInputError, match="not supported yet"):
        load_flow_condition(EXAMPLE, "panorama_clip", 16, 64, 128)


def test_writer_gives_h264_yuv420p_with_moov_first(tmp_path) -> None:
    frames = np.random.default_rng(0).random((6, 64, 128, 3), dtype=np.float32)
    path = write_video(frames, tmp_path / "out" / "video.mp4", fps=8)
    (stream,) = ffprobe(path)["streams"]
    assert (stream["codec_name"], stream["pix_fmt"], stream["width"], stream["height"]) == ("h264", "yuv420p", 128, 64)
    assert stream["nb_read_frames"] == "6" and stream["avg_frame_rate"] == "8/1"
    data = path.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # faststart
    assert [p.name for p in path.parent.iterdir()] == ["video.mp4"]  # no temporary file left behind


def test_writer_leaves_nothing_on_failure(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"\(F, H, W, 3\)"):
        write_video(np.zeros((2, 64, 128), np.float32), tmp_path / "video.mp4")
    assert list(tmp_path.iterdir()) == []
