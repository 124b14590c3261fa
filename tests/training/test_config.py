import json

import pytest

from models.training.config import TrainConfig, parse_override


def test_overrides_are_typed_by_the_setting():
    assert parse_override("learning_rate=1e-5") == ("learning_rate", 1e-5)
    assert parse_override("max-steps=10") == ("max_steps", 10)
    assert parse_override("roll=false") == ("roll", False)
    assert parse_override("validation_prompt=yes") == ("validation_prompt", "yes")
    assert parse_override("weights=null") == ("weights", None)
    assert parse_override("loggers=[csv]") == ("loggers", ["csv"])
    with pytest.raises(ValueError):
        parse_override("nope=1")


def test_config_files_and_validation(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"csv": "a.csv", "videos_dir": "v", "flows_dir": "f", "max_steps": 5}))
    config = TrainConfig.from_file(path, {"mixed_precision": "bf16"}).validate()
    assert config.max_steps == 5 and config.mixed_precision == "bf16" and config.learning_rate == 1e-5
    with pytest.raises(ValueError, match="width must be 2 x height"):
        TrainConfig.from_file(path, {"width": 100}).validate()
    with pytest.raises(ValueError, match="unknown"):
        TrainConfig.from_file(path, {"lr": 1})
