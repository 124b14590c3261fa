"""The shipped catalogue: it loads, every model becomes a valid registry entry, the deployment's registry names
the paths a pull installs, and malformed catalogues are refused with the reason."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from models.registry import ModelSpec
from models.weights_pull.catalogue import load_catalogue
from models.weights_pull.errors import PullError
from models.weights_pull.pull import Puller
from models.weights_pull.store import ModelsDir

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_catalogue_gives_valid_registry_entries(tmp_path) -> None:
    catalogue = load_catalogue()
    assert {"realistic", "lyriel", "toonyou"} <= set(catalogue.models)
    puller = Puller(catalogue, ModelsDir(tmp_path))
    for model in catalogue.models.values():
        entry = puller.registry_entry(model)
        paths = {k: tmp_path / v for k, v in entry.items() if k != "description"}
        ModelSpec(name=model.name, description=entry["description"], **paths)
    mm = catalogue.components["mm-sd-v14"].files[0]
    assert mm.sha256 == "aa7fd8a200a89031edd84487e2a757c5315460eca528fa70d4b3885c399bffd5"
    adapter = catalogue.components["360-adapter"].files[0]
    assert adapter.plain_urls() == [
        "https://drive.usercontent.google.com/download?id=1IPbxcMSRnApeMD9eSVcRarLL7smUltiw&export=download&confirm=t"
    ]
    sd15 = catalogue.components["sd15"]
    assert len(sd15.hf.revision) == 40 and not any(f.path.endswith(".bin") for f in sd15.files)


def test_the_k8s_registry_names_what_the_init_container_pulls() -> None:
    config = yaml.safe_load((ROOT / "k8s/base/configmap.yaml").read_text())["data"]
    catalogue = load_catalogue()
    (pulled,) = config["DVD360_PULL_MODELS"].split(",")
    expected = Puller(catalogue, ModelsDir(Path(config["DVD360_MODELS_DIR"]))).registry_entry(catalogue.model(pulled))
    served = yaml.safe_load(config["models.yaml"])["models"]["realistic-vision"]
    for field in ("sd15", "base_checkpoint", "motion_module", "adapter"):
        assert served[field] == f"{config['DVD360_MODELS_DIR']}/{expected[field]}"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("components: {c: {files: [{path: ../x, urls: [u]}]}}\nmodels: {}", "must be relative"),
        ("components: {c: {files: [{path: x}]}}\nmodels: {}", "has no source"),
        ("components: {}\nmodels: {m: {sd15: a, motion_module: b, adapter: c}}", "unknown components: a, b, c"),
        ("components: {c: {files: [{path: x, urls: [u], sha256: nope}]}}\nmodels: {}", "sha256"),
        ("[1, 2]", "must be a mapping"),
    ],
)
def test_malformed_catalogues_are_refused_with_the_reason(tmp_path, text, reason) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(PullError, match=reason):
        load_catalogue(path)


def test_unknown_model_names_the_available_ones() -> None:
    with pytest.raises(PullError, match="no model 'sdxl' in the catalogue; available: lyriel, realistic"):
        load_catalogue().model("sdxl")
