"""`dvd360 generate` end to end on the tiny model: prompt + flow video -> an MP4 ffprobe reads."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from cli.main import app
from tests.tools import EXAMPLE_FLOW as EXAMPLE
from tests.tools import decoded_md5, plain

ARGS = ["--model", "tiny", "--frames", "4", "--height", "64", "--width", "128", "--steps", "2", "--seed", "11"]


def test_generate_with_flow_writes_a_video(tmp_path) -> None:
    runner = CliRunner()
    outs = []
    for name in ("a.mp4", "b.mp4"):
        result = runner.invoke(
            app, ["generate", "--prompt", "a volcano", "--flow", str(EXAMPLE), "--out", str(tmp_path / name), *ARGS]
        )
        assert result.exit_code == 0, result.output
        summary = json.loads(result.output[result.output.rindex('{"out"') :])
        assert summary["seed"] == 11 and summary["size"] == [64, 128]
        outs.append(tmp_path / name)
    assert decoded_md5(outs[0]) == decoded_md5(outs[1])  # same seed, same video


def test_generate_explains_bad_input(tmp_path) -> None:
    runner = CliRunner()
    bad = tmp_path / "flow.mp4"
    bad.write_text("nope")
    result = runner.invoke(
        app, ["generate", "--prompt", "x", "--flow", str(bad), "--out", str(tmp_path / "o.mp4"), *ARGS]
    )
    assert result.exit_code == 2 and "not a readable video" in plain(result.output)
    result = runner.invoke(
        app, ["generate", "--prompt", "x", "--out", str(tmp_path / "o.mp4"), *ARGS[2:], "--model", "nope"]
    )
    assert result.exit_code == 2 and "available: tiny" in plain(result.output)
    result = runner.invoke(
        app, ["generate", "--prompt", "x", "--weights", str(tmp_path), "--out", str(tmp_path / "o.mp4")]
    )
    assert result.exit_code == 2 and "not a dvd360 model folder" in plain(result.output)
    assert not (tmp_path / "o.mp4").exists()


def test_exported_tiny_folder_generates_like_the_builtin(tmp_path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["export-tiny", str(tmp_path / "tiny")]).exit_code == 0
    by_folder = runner.invoke(
        app,
        ["generate", "--prompt", "a", "--weights", str(tmp_path / "tiny"), "--out", str(tmp_path / "f.mp4"), *ARGS[2:]],
    )
    builtin = runner.invoke(app, ["generate", "--prompt", "a", "--out", str(tmp_path / "b.mp4"), *ARGS])
    assert by_folder.exit_code == 0 and builtin.exit_code == 0, by_folder.output + builtin.output
    assert decoded_md5(tmp_path / "f.mp4") == decoded_md5(tmp_path / "b.mp4")
