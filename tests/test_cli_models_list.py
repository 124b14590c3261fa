"""`dvd360 models list` (issue 28, item 4) shows what is served, the built-in `tiny` first among them, with each
model's request defaults (frames, size, steps, guidance, fps) and limits from the registry GET /models reads,
then the catalogue's models."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from core.settings import get_settings
from models.generation_params import TINY_DEFAULTS, TINY_LIMITS


@pytest.fixture
def listing(monkeypatch, tmp_path):
    for name in ("DVD360_MODEL_REGISTRY", "DVD360_CATALOGUE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DVD360_MODELS_DIR", str(tmp_path / "models"))
    get_settings.cache_clear()

    def run(*args: str) -> list[str]:
        get_settings.cache_clear()
        result = CliRunner().invoke(app, ["models", "list", *args])
        assert result.exit_code == 0, result.output
        return result.output.splitlines()

    yield run
    get_settings.cache_clear()


def row(lines: list[str], name: str) -> list[str]:
    return next(line for line in lines if line.startswith(f"{name} ")).split()


def test_the_built_in_model_and_its_defaults_and_limits(listing) -> None:
    lines = listing()
    assert lines[0] == "served models (no registry: the built-in model only):"
    d, lim = TINY_DEFAULTS, TINY_LIMITS
    size, guidance = f"{d.width}x{d.height}", f"{d.guidance_scale:g}"
    assert row(lines, "tiny")[:7] == ["tiny", "built-in", str(d.num_frames), size, str(d.steps), guidance, str(d.fps)]
    presets = "draft unipc x3, standard unipc x6, high unipc x15"  # the tiny model's quality presets
    limits = f"at most {lim.max_frames} frames, {lim.max_height} px high, {lim.max_steps} steps"
    assert lines[2].endswith(f"{limits}; native 128x64; {presets}")
    assert row(lines, "tiny")[:7] == ["tiny", "built-in", "8", "128x64", "4", "7.5", "8"]
    assert any(line.startswith("catalogue (") for line in lines) and row(lines, "realistic")[1] == "-"


def test_a_registrys_models_with_their_own_defaults(listing, monkeypatch, tmp_path) -> None:
    registry = tmp_path / "registry.yaml"
    mine = {
        "folder": str(tmp_path / "weights"),  # not there: its weights are missing
        "defaults": {"num_frames": 24, "height": 256, "width": 512, "steps": 30, "guidance_scale": 6.5, "fps": 12},
        "limits": {"max_frames": 64, "max_height": 256, "max_steps": 50},
    }
    plain = {"folder": str(tmp_path)}  # no defaults given: the published 360DVD sampling
    registry.write_text(yaml.safe_dump({"models": {"mine": mine, "plain": plain}}))
    monkeypatch.setenv("DVD360_MODEL_REGISTRY", str(registry))
    lines = listing()
    assert lines[0] == f"served models (registry {registry}):"
    assert row(lines, "mine")[:7] == ["mine", "missing", "24", "512x256", "30", "6.5", "12"]
    presets = "draft unipc x5, standard unipc x10, high unipc x25"  # SD-1.5's, as it sets none of its own
    assert " ".join(row(lines, "mine")[7:]) == f"at most 64 frames, 256 px high, 50 steps; native 1024x512; {presets}"
    assert row(lines, "plain")[:7] == ["plain", "installed", "16", "1024x512", "25", "7.5", "8"]
    assert row(lines, "tiny")[1] == "built-in"

    (tmp_path / "elsewhere").mkdir()  # --dir reads the registry pull wrote there
    (tmp_path / "elsewhere" / "registry.yaml").write_text(yaml.safe_dump({"models": {"pulled": plain}}))
    lines = listing("--dir", str(tmp_path / "elsewhere"))
    assert row(lines, "pulled")[:2] == ["pulled", "installed"] and not [line for line in lines if "mine" in line]
