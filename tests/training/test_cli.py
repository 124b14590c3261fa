"""The `train` and `data` commands, driven through typer as a user would."""

import json

import typer
import yaml
from typer.testing import CliRunner

from cli.train import register
from tests.training.conftest import H, W, dataset_settings

runner = CliRunner()


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def _summary(output: str) -> dict:
    """The command's JSON summary line (logs may be interleaved in the captured output)."""
    return json.loads(output[output.rindex('{"') :].splitlines()[0])


def _config(data, tmp_path, **extra):
    values = {
        **dataset_settings(data),
        "checkpoint_every": 1,
        "progress": False,
        **extra,
    }
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def test_train_then_resume_from_the_command_line(clean_data, tmp_path):
    config = _config(clean_data, tmp_path)
    run = str(tmp_path / "run")
    first = runner.invoke(_app(), ["train", "--config", str(config), "--output-dir", run, "--set", "max_steps=2"])
    assert first.exit_code == 0, first.output
    summary = _summary(first.output)
    assert summary["step"] == 2 and summary["resumed_from"] is None
    second = runner.invoke(
        _app(), ["train", "--config", str(config), "--output-dir", run, "--max-steps", "3", "--resume", "latest"]
    )
    assert second.exit_code == 0, second.output
    summary = _summary(second.output)
    assert summary["step"] == 3 and summary["resumed_from"].endswith("step-0000002")


def test_bad_settings_are_rejected_clearly(clean_data, tmp_path):
    config = _config(clean_data, tmp_path)
    result = runner.invoke(_app(), ["train", "--config", str(config), "--set", "mixed_precision=fp8"])
    assert result.exit_code != 0 and "mixed_precision" in result.output
    result = runner.invoke(_app(), ["train", "--config", str(config), "--set", "no_such_setting=1"])
    assert result.exit_code != 0 and "no_such_setting" in result.output


def test_data_flows_command(clean_data, tmp_path):
    out = tmp_path / "flows"
    result = runner.invoke(
        _app(), ["data", "flows", str(clean_data["videos"]), str(out), "--workers", "1", "--height", str(H),
                 "--width", str(W)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert _summary(result.output)["written"] == 3
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in clean_data["videos"].iterdir())


def test_data_captions_command(clean_data, tmp_path):
    from models.training.dataset import read_caption_csv
    from tests.training.chat_double import ChatEndpointDouble
    from tests.training.test_text_fusion import _tiny_blip

    _tiny_blip(tmp_path / "blip")
    out = tmp_path / "captions.csv"
    with ChatEndpointDouble() as endpoint:
        result = runner.invoke(
            _app(),
            ["data", "captions", str(clean_data["videos"]), str(out), "--blip", str(tmp_path / "blip"),
             "--llm-base-url", endpoint.base_url, "--llm-model", "local", "--view-size", "32", "--device", "cpu"],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert len(endpoint.requests) == 3
    assert len(read_caption_csv(out)) == 3
