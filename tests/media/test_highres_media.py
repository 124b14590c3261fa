"""High-resolution media (issue 26): the H.264 level players decide from, and the quality figures fed chunk by chunk,
with the spatial window border seam."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.main import app
from models.media.evaluate import VideoScores, evaluate_frames, evaluate_video
from models.media.video_writer import h264_level, write_video
from models.spatial_windows import SpatialWindows
from tests.media.test_flow_and_geometry import seamless_panorama
from tests.tools import last_json, video_stream


def test_a_2048_x_4096_clip_encodes_at_a_level_players_accept(tmp_path) -> None:
    """Two flat frames (fast): High profile, yuv420p, level 5.1 (phones and headsets that play 4K decode it)."""
    path = write_video(np.full((2, 2048, 4096, 3), 0.4, np.float32), tmp_path / "big.mp4", fps=8)
    stream = video_stream(path)
    assert (stream["width"], stream["height"], stream["nb_read_frames"]) == (4096, 2048, "2")
    assert (stream["profile"], stream["pix_fmt"], stream["level"]) == ("High", "yuv420p", 51)
    small = video_stream(write_video(np.zeros((2, 64, 128, 3), np.uint8), tmp_path / "small.mp4"))
    assert small["level"] == 30  # never below 3.0: its bitrate cap holds CRF 18 noise at small sizes


@pytest.mark.parametrize(
    ("width", "height", "fps", "level"),
    [(128, 64, 8, "3.0"), (1024, 512, 8, "3.1"), (2048, 1024, 8, "4.0"), (2048, 1024, 30, "4.0"),
     (4096, 2048, 8, "5.1"), (4096, 2048, 30, "5.1"), (4096, 2048, 60, "5.2")],
)  # fmt: skip
def test_h264_level_is_the_lowest_that_holds_the_size_and_rate(width, height, fps, level) -> None:
    assert h264_level(width, height, fps)[0] == level


def test_sizes_beyond_level_5_2_are_refused() -> None:
    with pytest.raises(ValueError, match=r"no H\.264 level"):
        h264_level(8192, 4096, 8)


def test_scores_fed_in_chunks_equal_the_whole_video_and_hold_no_video() -> None:
    rng = np.random.default_rng(0)
    frames = rng.random((20, 64, 128, 3), dtype=np.float32)
    whole = evaluate_frames(frames, window=8)
    scores = VideoScores(window=8)
    passed = list(scores.passing(np.array_split(frames, [3, 4, 11])))
    assert [len(c) for c in passed] == [3, 1, 7, 9]
    chunked = scores.result()
    assert chunked.keys() == whole.keys() and chunked["spatial_window_seam_ratio"] is None
    for key, value in whole.items():
        assert chunked[key] == (None if value is None else pytest.approx(value, rel=1e-6)), key
    assert whole["window_seam_ratio"] == pytest.approx(1, abs=0.1)  # noise: no window shows
    assert evaluate_frames((frames * 255).astype(np.uint8), window=8)["seam_ratio"] == pytest.approx(
        whole["seam_ratio"], rel=0.01
    )


def seamed_panorama(windows: SpatialWindows, height: int, step: float) -> np.ndarray:
    """A smooth panorama (a few frames) whose window regions of the last step's layout are offset by `step` in
    alternating brightness: a seam at every window border."""
    base = np.stack([np.roll(seamless_panorama(height, 2 * height), 4 * t, axis=1) for t in range(3)])
    frames = base.astype(np.float32) / 255
    rows, columns = windows.borders(height // 8, height // 4)
    row_band = np.searchsorted(np.array(rows) * 8, np.arange(height), side="right")
    column_band = np.searchsorted(np.array(columns) * 8, np.arange(2 * height), side="right") % max(1, len(columns))
    checker = ((row_band[:, None] + column_band[None, :]) % 2).astype(np.float32)
    return np.clip(frames + step * checker[None, :, :, None], 0, 1)


def test_spatial_window_seam_ratio_finds_window_borders() -> None:
    windows = SpatialWindows.from_pixels((64, 128))
    clean = evaluate_frames(seamed_panorama(windows, 256, 0.0), spatial_windows=windows)
    seamed = evaluate_frames(seamed_panorama(windows, 256, 0.08), spatial_windows=windows)
    # measured: 1.12 without steps at the borders, 1.36 with steps of 0.04, 2.01 with 0.08
    assert clean["spatial_window_seam_ratio"] < 1.25 and seamed["spatial_window_seam_ratio"] > 1.6
    assert clean["seam_ratio"] < 1.5  # the seams are at the windows' borders, not at the panorama's
    within = evaluate_frames(seamed_panorama(windows, 64, 0.08)[:, :64, :128], spatial_windows=windows)
    assert within["spatial_window_seam_ratio"] is None  # one window: no window borders


def test_evaluate_streams_the_file_and_reports_the_spatial_seam(tmp_path) -> None:
    windows = SpatialWindows.from_pixels((64, 128))
    path = write_video(seamed_panorama(windows, 256, 0.08), tmp_path / "seamed.mp4", quality=10)
    direct = evaluate_video(path, spatial_windows=windows)
    assert direct["frames"] == 3 and (direct["height"], direct["width"]) == (256, 512)
    assert direct["spatial_window_seam_ratio"] > 1.6
    result = CliRunner().invoke(app, ["evaluate", str(path), "--spatial-window", "64x128"])
    assert result.exit_code == 0, result.output
    assert last_json(result.output)["spatial_window_seam_ratio"] == pytest.approx(direct["spatial_window_seam_ratio"])
    default = last_json(CliRunner().invoke(app, ["evaluate", str(path)]).output)
    assert default["spatial_window_seam_ratio"] is None  # 256 x 512 fits the default 512 x 1024 window
    bad = CliRunner().invoke(app, ["evaluate", str(path), "--spatial-window", "100x200"])
    assert bad.exit_code == 2 and "multiples of 64" in bad.output
