"""The media commands as a user runs them, and the panorama scores."""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

from cli.main import app
from models.media.evaluate import evaluate_frames
from models.media.flow_encoding import encode_flow
from models.media.flow_video import read_flow_condition
from models.media.video_writer import write_video
from tests.media.test_flow_and_geometry import seamless_panorama
from tests.tools import last_json, plain, spherical_side_data

runner = CliRunner()


def test_scores_tell_a_seamless_panorama_from_a_seamed_one() -> None:
    pano = seamless_panorama(64, 128).astype(np.float32) / 255
    seamless = evaluate_frames(np.stack([np.roll(pano, 5 * t, axis=1) for t in range(4)]))
    cut = evaluate_frames(np.stack([np.roll(pano, 5 * t, axis=1)[:, 20:108] for t in range(4)]))  # not a panorama
    assert seamless["seam_ratio"] < 1.5 < cut["seam_ratio"]
    assert seamless["end_continuity"] < cut["end_continuity"]
    still = evaluate_frames(np.stack([pano] * 3))
    assert still["frame_consistency"] == 0 < seamless["frame_consistency"]


def test_flow_encode_then_generate_condition(tmp_path) -> None:
    flow = np.zeros((5, 32, 64, 2), np.float32)
    flow[..., 0] = 4.0
    np.save(tmp_path / "flow.npy", flow)
    result = runner.invoke(app, ["flow", "encode", str(tmp_path / "flow.npy"), "-o", str(tmp_path / "flow.mp4")])
    assert result.exit_code == 0, result.output
    assert last_json(result.output)["frames"] == 5
    condition = read_flow_condition(tmp_path / "flow.mp4", 4, 32, 64)
    expected = encode_flow(np.array([[[4.0, 0.0]]]))[0, 0].astype(np.float32) / 127.5 - 1
    assert condition.std(axis=(0, 2, 3)).max() < 0.02  # one uniform colour
    np.testing.assert_allclose(condition.mean(axis=(0, 2, 3)), expected, atol=0.03)
    assert expected.max() > -1  # and not the black of "no motion"


def test_flow_extract_inject_and_evaluate(tmp_path) -> None:
    base = seamless_panorama(64, 128)
    clip = write_video(np.stack([np.roll(base, 2 * t, axis=1) for t in range(6)]), tmp_path / "clip.mp4", quality=0)
    result = runner.invoke(app, ["flow", "extract", str(clip), "-o", str(tmp_path / "flow.mp4"), "--height", "64"])
    assert result.exit_code == 0, result.output
    assert last_json(result.output) == {"out": str(tmp_path / "flow.mp4"), "frames": 5, "size": [64, 128]}

    plain_video = write_video(np.stack([base] * 3), tmp_path / "plain.mp4", spherical=False)
    result = runner.invoke(app, ["inject", str(plain_video), "-o", str(tmp_path / "360.mp4")])
    assert result.exit_code == 0, result.output
    assert spherical_side_data(tmp_path / "360.mp4")["projection"] == "equirectangular"

    scores = runner.invoke(app, ["evaluate", str(tmp_path / "360.mp4")])
    assert scores.exit_code == 0 and last_json(scores.output)["frames"] == 3


def test_media_commands_explain_bad_files(tmp_path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\0\0\0\x08free")
    result = runner.invoke(app, ["inject", str(bad), "-o", str(tmp_path / "o.mp4")])
    assert result.exit_code == 2 and "no moov box" in plain(result.output)
    square = write_video(np.zeros((3, 64, 64, 3), np.uint8), tmp_path / "square.mp4")
    result = runner.invoke(app, ["flow", "extract", str(square), "-o", str(tmp_path / "f.mp4")])
    assert result.exit_code == 2 and "not an equirectangular (2:1) panorama" in plain(result.output)
