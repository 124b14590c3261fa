"""The registry pull writes is the default one (settings, hence serve, generate, worker and API); an explicit
DVD360_MODEL_REGISTRY still wins; DVD360_PULL_MODELS pulls at worker start, and installed models cost no download."""

from __future__ import annotations

import os

import pytest
import yaml

from cli.models import pull_configured_models
from core.settings import Settings, get_settings
from models.registry import load_registry
from tests.pull.pulling import sha256

BLOB = os.urandom(4096)


@pytest.fixture
def settings_env(monkeypatch, tmp_path):
    for name in [k for k in os.environ if k.startswith("DVD360_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DVD360_MODELS_DIR", str(tmp_path / "models"))
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_pulled_registry_is_the_default_unless_one_is_named(settings_env, tmp_path) -> None:
    assert Settings().model_registry is None  # nothing pulled: tiny only
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "registry.yaml").write_text("models: {}\n")
    assert Settings().model_registry == tmp_path / "models" / "registry.yaml"
    settings_env.setenv("DVD360_MODEL_REGISTRY", str(tmp_path / "mine.yaml"))
    assert Settings().model_registry == tmp_path / "mine.yaml"
    settings_env.setenv("DVD360_MODEL_REGISTRY", "")  # compose passes unset variables as empty strings
    assert Settings().model_registry == tmp_path / "models" / "registry.yaml"


def test_worker_start_pulls_configured_models(settings_env, server, tmp_path) -> None:
    server.files["blob.bin"] = BLOB
    component = {"entry": "blob.bin", "files": [{"path": "blob.bin", "urls": [f"{server.url}/files/blob.bin"]}]}
    catalogue = {"components": {"c": component}, "models": {"m": {"sd15": "c", "motion_module": "c", "adapter": "c"}}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(catalogue))
    settings_env.setenv("DVD360_CATALOGUE", str(tmp_path / "c.yaml"))
    settings_env.setenv("DVD360_PULL_MODELS", "m")

    pull_configured_models()
    registry = load_registry(get_settings().model_registry)  # the settings see the registry the pull just wrote
    assert registry.names() == ["m", "tiny"] and registry.get("m").missing_paths() == []
    assert (tmp_path / "models" / "c" / "blob.bin").read_bytes() == BLOB
    lock = (tmp_path / "models" / "models.lock.json").read_text()
    assert sha256(BLOB) in lock

    registry_text = (tmp_path / "models" / "registry.yaml").read_text()
    pull_configured_models()  # the next start: nothing downloaded, nothing rewritten
    assert server.gets("/files/blob.bin") == [None]
    assert (tmp_path / "models" / "registry.yaml").read_text() == registry_text
