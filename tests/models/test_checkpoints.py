"""Strict offline loading of checkpoints written in the published layouts, and of saved model folders."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
import torch
from diffusers import MotionAdapter
from diffusers.loaders.single_file_utils import convert_animatediff_checkpoint_to_diffusers

from models.adapter import Adapter360
from models.checkpoints import MM_SD_V14_CONFIG, load_adapter, load_ldm_checkpoint, load_motion_adapter
from models.errors import CheckpointError
from models.loading import load_pipeline, load_pipeline_folder
from models.pipeline import Panorama360Pipeline
from models.registry import ModelSpec
from models.tiny import build_tiny_components
from tests.models.published_layouts import adapter_checkpoint, ldm_checkpoint, motion_checkpoint, sd15_folder
from tests.tools import REFERENCE

CALL = dict(prompt="a volcano at sunset", num_frames=2, height=64, width=128, num_inference_steps=2, seed=3)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def parts() -> dict:
    return build_tiny_components(seed=5)


@pytest.mark.parametrize("wrapped", [False, True], ids=["bare", "state_dict"])
@pytest.mark.parametrize("module_prefix", [False, True], ids=["plain", "module."])
def test_adapter_layouts_load(parts, tmp_path, wrapped, module_prefix) -> None:
    path = adapter_checkpoint(parts["adapter"], tmp_path / "360Adapter.ckpt", wrapped, module_prefix)
    assert same_weights(load_adapter(path), parts["adapter"])


@pytest.mark.parametrize("wrapped", [False, True], ids=["bare", "state_dict"])
def test_original_motion_module_layout_loads(parts, tmp_path, wrapped) -> None:
    path = motion_checkpoint(parts["motion_adapter"], tmp_path / "mm.ckpt", wrapped)
    loaded = load_motion_adapter(path, list(parts["unet2d"].config.block_out_channels))
    assert same_weights(loaded, parts["motion_adapter"])


def test_diffusers_motion_adapter_folder_loads(parts, tmp_path) -> None:
    parts["motion_adapter"].save_pretrained(tmp_path / "mm")
    assert same_weights(load_motion_adapter(tmp_path / "mm", []), parts["motion_adapter"])


def manifest(name: str) -> dict[str, list[int]]:
    return json.loads((REFERENCE / name).read_text())["tensors"]


def test_full_size_adapter_manifest_matches_exactly() -> None:
    with torch.device("meta"):
        expected = {k: list(v.shape) for k, v in Adapter360().state_dict().items()}
    assert {k.removeprefix("module."): v for k, v in manifest("adapter360_keys.json").items()} == expected


def test_full_size_motion_manifest_maps_completely() -> None:
    shapes = manifest("mm_sd_v14_keys.json")
    assert sum(k.endswith("pos_encoder.pe") for k in shapes) == 40 and len(shapes) == 560
    with torch.device("meta"):
        fake = {k: torch.empty(v) for k, v in shapes.items()}
        converted = convert_animatediff_checkpoint_to_diffusers(fake)
        config = {k: v for k, v in json.loads(MM_SD_V14_CONFIG.read_text()).items() if not k.startswith("_")}
        expected = MotionAdapter(**config).state_dict()
    computed = {k for k in expected if k.endswith("pos_embed.pe")}  # sinusoid buffers diffusers recomputes
    assert len(computed) == 20
    assert {k: list(v.shape) for k, v in converted.items()} == {
        k: list(v.shape) for k, v in expected.items() if k not in computed
    }
    assert all(v[1] == config["motion_max_seq_length"] for k, v in shapes.items() if k.endswith("pe"))


def test_wrong_file_names_file_and_keys(parts, tmp_path) -> None:
    path = tmp_path / "not-an-adapter.ckpt"
    torch.save({"state_dict": parts["vae"].state_dict()}, path)
    with pytest.raises(CheckpointError) as err:
        load_adapter(path)
    message = str(err.value)
    assert str(path) in message and "360-Adapter" in message
    assert "22 missing: body.0." in message and "unexpected: " in message and "more)" in message


def test_mis_shaped_motion_module_is_reported(parts, tmp_path) -> None:
    path = motion_checkpoint(parts["motion_adapter"], tmp_path / "mm.ckpt", wrapped=False)
    with pytest.raises(CheckpointError, match=r"mis-shaped: .*proj_in.weight"):
        load_motion_adapter(path, [48, 48, 96, 96])  # the UNet is wider than the module was trained for


@pytest.mark.parametrize("suffix", [".ckpt", ".safetensors"])
def test_truncated_file_fails_clearly(parts, tmp_path, suffix) -> None:
    path = tmp_path / f"adapter{suffix}"
    if suffix == ".ckpt":
        adapter_checkpoint(parts["adapter"], path, wrapped=True, module_prefix=True)
    else:
        from safetensors.torch import save_file

        save_file(parts["adapter"].state_dict(), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"not a readable checkpoint"):
        load_adapter(path)


def test_single_file_without_unet_keys_is_refused(parts, tmp_path) -> None:
    path = tmp_path / "model.safetensors"
    from safetensors.torch import save_file

    save_file({"cond_stage_model.x": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="not a single-file Stable Diffusion checkpoint"):
        load_ldm_checkpoint(path, parts["unet2d"], parts["vae"])


def test_missing_paths_are_named(tmp_path) -> None:
    spec = ModelSpec(name="m", sd15=tmp_path / "sd", motion_module=tmp_path / "mm.ckpt", adapter=tmp_path / "a.ckpt")
    with pytest.raises(CheckpointError, match=r"missing .*mm\.ckpt"):
        load_pipeline(spec)


def test_published_parts_give_the_same_pipeline(parts, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_network(*args, **kwargs):
        raise AssertionError(f"loading tried to reach the network: {args}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    spec = ModelSpec(
        name="tiny-published",
        sd15=sd15_folder(parts, tmp_path / "sd15"),
        motion_module=motion_checkpoint(parts["motion_adapter"], tmp_path / "mm_sd_v14.ckpt", wrapped=True),
        adapter=adapter_checkpoint(parts["adapter"], tmp_path / "360Adapter_flow_v1.ckpt", True, True),
    )
    loaded = load_pipeline(spec, device="cpu")
    original = Panorama360Pipeline.from_components(**build_tiny_components(seed=5), device="cpu")
    expected = original(**CALL).frames
    np.testing.assert_array_equal(loaded(**CALL).frames, expected)

    saved = load_pipeline_folder(loaded.save_pretrained(tmp_path / "folder"), device="cpu")
    np.testing.assert_array_equal(saved(**CALL).frames, expected)


def test_not_a_model_folder(tmp_path) -> None:
    (tmp_path / "model_index.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(CheckpointError, match="is not 'dvd360-pipeline'"):
        load_pipeline_folder(tmp_path)
    with pytest.raises(CheckpointError, match="not a dvd360 model folder"):
        load_pipeline_folder(tmp_path / "nothing-here")


@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
def test_personalised_single_file_replaces_unet_and_vae(parts, tmp_path, suffix) -> None:
    donor = build_tiny_components(seed=9)  # the "personalised" weights
    path = ldm_checkpoint(donor["unet2d"], donor["vae"], tmp_path / f"personal{suffix}")
    target = build_tiny_components(seed=5)
    unet, vae = load_ldm_checkpoint(path, target["unet2d"], target["vae"])
    assert same_weights(unet, donor["unet2d"]) and same_weights(vae, donor["vae"])


def test_novae_single_file_keeps_the_sd_vae(tmp_path) -> None:
    donor, target = build_tiny_components(seed=9), build_tiny_components(seed=5)
    sd_vae = {k: v.clone() for k, v in target["vae"].state_dict().items()}
    path = ldm_checkpoint(donor["unet2d"], donor["vae"], tmp_path / "personalNovae.safetensors", with_vae=False)
    unet, vae = load_ldm_checkpoint(path, target["unet2d"], target["vae"])
    assert same_weights(unet, donor["unet2d"])
    assert all(torch.equal(v, sd_vae[k]) for k, v in vae.state_dict().items())


def test_single_file_of_another_architecture_is_named(tmp_path) -> None:
    donor, target = build_tiny_components(seed=9), build_tiny_components(seed=5)
    path = ldm_checkpoint(donor["unet2d"], donor["vae"], tmp_path / "other.safetensors")
    wider = type(target["unet2d"])(**{**target["unet2d"].config, "block_out_channels": (48, 48, 96, 96)})
    with pytest.raises(
        CheckpointError, match=r"other\.safetensors is not a Stable Diffusion UNet checkpoint: .*mis-shaped"
    ):
        load_ldm_checkpoint(path, wider, target["vae"])
