"""`dvd360 models pull` against a real local hub (huggingface_hub with HF_ENDPOINT, plain URLs, a redirect),
then `dvd360 generate` finds the pulled model without flags and the strict loaders read the pulled files."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from cli.main import app
from core.settings import get_settings
from tests.pull.hub_server import COMMIT
from tests.pull.pulling import dvd360, pull_env, tiny_catalogue
from tests.tools import plain, video_stream

GENERATE = ["--frames", "2", "--height", "64", "--width", "128", "--steps", "1", "--seed", "3"]


def generate_with_default_registry(monkeypatch, models_dir: Path, out: Path):
    """`dvd360 generate --model tiny-real` with no --models: the settings' default registry is the pulled one."""
    monkeypatch.setenv("DVD360_MODELS_DIR", str(models_dir))
    monkeypatch.delenv("DVD360_MODEL_REGISTRY", raising=False)
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(
            app, ["generate", "--prompt", "a lake", "--model", "tiny-real", "--out", str(out), *GENERATE]
        )
    finally:
        get_settings.cache_clear()


def test_pull_then_generate_then_rm(hub, tiny_files, tmp_path, monkeypatch) -> None:
    env = pull_env(hub, tmp_path, tiny_catalogue(hub, tiny_files, tmp_path / "catalogue.yaml"))
    models = tmp_path / "models"
    done = dvd360(env, "models", "pull", "tiny-real")
    assert done.returncode == 0, done.stderr
    assert "trust on first use" in done.stderr and "tiny-real: installed" in done.stderr

    # installed whole, nothing half-written left, registry with relative paths, every hash recorded
    assert sorted(p.name for p in models.iterdir()) == [
        ".locks", ".partial", "adapter", "base", "mm", "models.lock.json", "registry.yaml", "sd15"
    ]  # fmt: skip
    assert list((models / ".partial").iterdir()) == []
    for component, files in tiny_files.items():
        for path, data in files.items():
            assert (models / component / path).read_bytes() == data
    assert not (models / "sd15" / ".cache").exists()  # huggingface_hub's download metadata is not installed
    entry = yaml.safe_load((models / "registry.yaml").read_text())["models"]["tiny-real"]
    assert entry["sd15"] == "sd15" and entry["motion_module"] == "mm/mm_sd_v14.ckpt"
    lock = json.loads((models / "models.lock.json").read_text())["components"]
    assert lock["sd15"]["unet/diffusion_pytorch_model.safetensors"]["trust"] == "published"
    assert lock["sd15"]["vae/config.json"]["trust"] == "first use"
    assert lock["sd15"]["vae/config.json"]["source"] == f"hf://tiny/sd15@{COMMIT}/vae/config.json"
    assert lock["base"]["personal.safetensors"]["source"].endswith("/redirect/personal.safetensors")

    # huggingface_hub really talked to the hub: HEAD for metadata, then one GET per file
    assert hub.gets(f"/tiny/sd15/resolve/{COMMIT}/unet/config.json") == [None]
    assert hub.gets("/tiny/animatediff/resolve/main/mm_sd_v14.ckpt") == [None]
    assert hub.gets("/redirect/personal.safetensors") == [None] and hub.gets("/files/personal.safetensors") == [None]

    listing = dvd360(env, "models", "list")
    assert "tiny-real      installed" in listing.stdout, listing.stdout
    assert dvd360(env, "models", "verify").returncode == 0

    again = dvd360(env, "models", "pull", "tiny-real")  # installed: no download at all
    assert again.returncode == 0 and "already installed" in again.stderr
    assert hub.gets("/tiny/animatediff/resolve/main/mm_sd_v14.ckpt") == [None]

    result = generate_with_default_registry(monkeypatch, models, tmp_path / "lake.mp4")
    assert result.exit_code == 0, result.output
    assert int(video_stream(tmp_path / "lake.mp4")["nb_read_frames"]) == 2

    removed = dvd360(env, "models", "rm", "tiny-real")
    assert removed.returncode == 0, removed.stderr
    assert sorted(p.name for p in models.iterdir() if not p.name.startswith(".")) == [
        "models.lock.json", "registry.yaml"
    ]  # fmt: skip
    assert yaml.safe_load((models / "registry.yaml").read_text())["models"] == {}


def test_a_wrong_pulled_file_is_refused_by_the_strict_loader(hub, tiny_files, tmp_path, monkeypatch) -> None:
    """The adapter URL serves the motion module (no published hash, so trust on first use takes it): loading
    fails naming the file and the keys, as for any wrong file."""
    hub.files["360Adapter_flow_v1.ckpt"] = tiny_files["mm"]["mm_sd_v14.ckpt"]
    env = pull_env(hub, tmp_path, tiny_catalogue(hub, tiny_files, tmp_path / "catalogue.yaml"))
    assert dvd360(env, "models", "pull", "tiny-real").returncode == 0
    result = generate_with_default_registry(monkeypatch, tmp_path / "models", tmp_path / "x.mp4")
    assert result.exit_code == 2
    message = plain(result.output)
    assert "360Adapter_flow_v1.ckpt is not a 360-Adapter checkpoint" in message and "missing" in message
    assert not (tmp_path / "x.mp4").exists()
