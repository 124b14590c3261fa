"""The CLI as a newcomer meets it: help readable at any width, model defaults and limits shared with the API, and
media commands that say when a file is not a 2:1 panorama."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.main import app
from models.media.video_writer import write_video
from tests.tools import spherical_side_data

DVD360 = str(Path(sys.executable).parent / "dvd360")


def run(*args: str, columns: int = 80) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": str(columns)}
    return subprocess.run([DVD360, *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("columns", [60, 80, 200])
def test_help_never_cuts_option_names(columns) -> None:
    result = run("generate", "--help", columns=columns)
    assert result.returncode == 0, result.stderr
    for option in ("--negative-prompt", "--flow-backend", "--raft-weights", "--latent-rotation", "--adapter-scale"):
        assert option in result.stdout, (option, result.stdout)
    assert "…" not in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= max(columns, 80)


def test_generate_takes_the_models_defaults_and_refuses_over_its_limits(tmp_path) -> None:
    runner = CliRunner()  # in process: the torch import is shared with the other model tests
    result = runner.invoke(app, ["generate", "--prompt", "a volcano", "--out", str(tmp_path / "t.mp4"), "--seed", "3"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.rindex('{"out"') :])
    assert summary["frames"] == 8 and summary["size"] == [64, 128]  # the tiny model's defaults, seconds on a CPU
    for option, value, limit in (("--frames", "129", "128"), ("--height", "512", "256"), ("--steps", "101", "100")):
        refused = runner.invoke(app, ["generate", "--prompt", "x", "--out", str(tmp_path / "x.mp4"), option, value])
        assert refused.exit_code == 2 and option in refused.output and limit in refused.output, refused.output


def test_inject_refuses_a_clip_that_is_not_2_to_1_unless_forced(tmp_path) -> None:
    frames = np.random.default_rng(0).random((3, 96, 128, 3), dtype=np.float32)
    clip = write_video(frames, tmp_path / "four_three.mp4", fps=8, spherical=False)
    refused = run("inject", str(clip), "-o", str(tmp_path / "tagged.mp4"))
    assert refused.returncode == 2 and "128 x 96, not 2:1" in refused.stderr and "--force" in refused.stderr
    assert not (tmp_path / "tagged.mp4").exists()
    forced = run("inject", str(clip), "-o", str(tmp_path / "tagged.mp4"), "--force")
    assert forced.returncode == 0, forced.stderr
    assert spherical_side_data(tmp_path / "tagged.mp4")["projection"] == "equirectangular"


def test_evaluate_explains_its_metrics_and_warns_on_a_non_panorama(tmp_path) -> None:
    help_text = run("evaluate", "--help", columns=100).stdout
    for metric in ("end_continuity", "seam_ratio", "frame_consistency"):
        assert metric in help_text
    frames = np.random.default_rng(1).random((3, 96, 128, 3), dtype=np.float32)
    clip = write_video(frames, tmp_path / "four_three.mp4", fps=8, spherical=False)
    result = run("evaluate", str(clip))
    assert result.returncode == 0 and "not 2:1" in result.stderr
    assert json.loads(result.stdout)["width"] == 128
