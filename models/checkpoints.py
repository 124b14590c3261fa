"""Reading published checkpoints strictly: every weight file is checked key by key and shape by shape, and a
mismatch fails with a CheckpointError that names the file and the missing, unexpected and mis-shaped keys
(the authors' loader used strict=False, so a wrong file loaded silently). Nothing here touches the network.

Lean: modules are built with their parameters on the meta device (no random initialisation) and take the
file's tensors by assignment (no second copy); torch files are memory-mapped.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKL, MotionAdapter, UNet2DConditionModel, UNetMotionModel
from diffusers.loaders.single_file_utils import (
    convert_animatediff_checkpoint_to_diffusers,
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
)
from safetensors import SafetensorError
from safetensors.torch import load_file

from models.adapter import Adapter360
from models.errors import CheckpointError

MM_SD_V14_CONFIG = Path(__file__).parent / "configs" / "mm_sd_v14.json"
LDM_UNET_PREFIX = "model.diffusion_model."
LDM_VAE_PREFIX = "first_stage_model."
SHOWN_KEYS = 8  # keys listed per category in an error; the count says how many more there are

StateDict = dict[str, torch.Tensor]


def read_state_dict(path: str | Path) -> StateDict:
    """Tensors of a .safetensors or torch pickle file (weights only), unwrapped from a `state_dict` entry."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file; check the configured path")
    try:
        if path.suffix == ".safetensors":
            data = load_file(path)
        else:
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (SafetensorError, pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or wrong format?): {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{path}: holds no state dict of tensors")
    return data


def strip_prefix(state_dict: StateDict, prefix: str) -> StateDict:
    """Drop a wrapper prefix (e.g. DistributedDataParallel's `module.`) where every key has it."""
    if state_dict and all(k.startswith(prefix) for k in state_dict):
        return {k[len(prefix) :]: v for k, v in state_dict.items()}
    return state_dict


def _listing(label: str, keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOWN_KEYS])
    more = f" (+{len(keys) - SHOWN_KEYS} more)" if len(keys) > SHOWN_KEYS else ""
    return f"{len(keys)} {label}: {shown}{more}"


def empty(cls: type[torch.nn.Module], **config) -> torch.nn.Module:
    """A module whose parameters are on the meta device (buffers, e.g. computed sinusoid tables, are real)."""
    with init_empty_weights():
        return cls(**config)


def load_strict(module: torch.nn.Module, state_dict: StateDict, source: Path | str, what: str) -> None:
    """Assign every tensor or fail naming the file and what does not match (before torch's generic error).

    The module takes the tensors themselves (a meta-built module needs that; a built one is spared a copy)."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    misshaped = sorted(
        f"{k} {tuple(state_dict[k].shape)} != {tuple(expected[k].shape)}"
        for k in set(expected) & set(state_dict)
        if state_dict[k].shape != expected[k].shape
    )
    if missing or unexpected or misshaped:
        problems = [
            _listing(label, keys)
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped))
            if keys
        ]
        raise CheckpointError(f"{source} is not a {what} checkpoint: " + "; ".join(problems))
    module.load_state_dict(state_dict, strict=True, assign=True)


# --------------------------------------------------------------------------- 360-Adapter
def adapter_config_from_state_dict(state_dict: StateDict, stages: int = 4) -> dict:
    """The adapter's widths read from its weights, so tiny and full-size checkpoints load alike."""
    if "conv_in.weight" not in state_dict:
        return {}  # load_strict reports the mismatch with the full key lists
    blocks = sorted({int(k.split(".")[1]) for k in state_dict if k.startswith("body.")})
    per_stage = max(len(blocks) // stages, 1)
    conv_in = state_dict["conv_in.weight"]
    channels = [int(state_dict[f"body.{s * per_stage}.block1.weight"].shape[0]) for s in range(stages)]
    return {"in_channels": int(conv_in.shape[1]) // 64, "channels": channels, "num_res_blocks": per_stage}


def load_adapter(path: str | Path) -> Adapter360:
    """The 360-Adapter from its checkpoint: bare, under `state_dict`, with or without `module.`."""
    path = Path(path)
    state_dict = strip_prefix(read_state_dict(path), "module.")
    try:
        adapter = empty(Adapter360, **adapter_config_from_state_dict(state_dict))
    except KeyError:
        adapter = empty(Adapter360)  # the layout is wrong: compare against the published one to say how
    load_strict(adapter, state_dict, path, "360-Adapter")
    return adapter.eval()


# --------------------------------------------------------------------------- motion module
def motion_adapter_config(path: Path, block_out_channels: list[int]) -> dict:
    """mm_sd_v14's config unless a `<file>.json` beside the checkpoint says otherwise; widths follow the UNet."""
    beside = path.with_suffix(".json")
    config = json.loads((beside if beside.is_file() else MM_SD_V14_CONFIG).read_text())
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    return {**config, "block_out_channels": list(block_out_channels)}


def load_motion_adapter(path: str | Path, block_out_channels: list[int]) -> MotionAdapter:
    """An AnimateDiff motion module: the original layout (.ckpt/.safetensors) or a diffusers folder."""
    path = Path(path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CheckpointError(f"{path}: a motion-adapter folder needs config.json (diffusers format)")
        return MotionAdapter.from_pretrained(path, local_files_only=True).eval()
    state_dict = read_state_dict(path)
    if any(".temporal_transformer." in k for k in state_dict):  # the original AnimateDiff naming
        max_len = max((v.shape[1] for k, v in state_dict.items() if k.endswith("pos_encoder.pe")), default=None)
        # diffusers recomputes the sinusoidal table, so the length is the only thing the file says about it
        state_dict = convert_animatediff_checkpoint_to_diffusers(state_dict)
    else:
        max_len = None
    config = motion_adapter_config(path, block_out_channels)
    if max_len is not None and max_len != config["motion_max_seq_length"]:
        raise CheckpointError(
            f"{path}: positional encoding holds {max_len} frames, config says "
            f"{config['motion_max_seq_length']}; put the right config in {path.with_suffix('.json')}"
        )
    adapter = empty(MotionAdapter, **config)
    load_strict(adapter, {**computed_tables(adapter), **state_dict}, path, "motion module")
    return adapter.eval()


def computed_tables(module: torch.nn.Module) -> StateDict:
    """diffusers keeps its sinusoidal tables (`pos_embed.pe`) as buffers it computes itself: take them from the
    module rather than report them missing (the original file's `pos_encoder.pe` are dropped on conversion)."""
    return {k: v for k, v in module.state_dict().items() if k.endswith("pos_embed.pe")}


def inflate_unet(unet2d: UNet2DConditionModel, motion: MotionAdapter) -> UNetMotionModel:
    """AnimateDiff's UNet from an image UNet and a motion module, holding their own tensors: built on the meta
    device and assigned, so there is no random initialisation and no second copy of 1.3 B parameters."""
    with init_empty_weights():
        unet = UNetMotionModel.from_unet2d(unet2d, motion, load_weights=False)
    weights = {**computed_tables(unet), **unet2d.state_dict(), **motion.state_dict()}
    load_strict(unet, weights, "image UNet + motion module", "AnimateDiff UNet")
    return unet


# --------------------------------------------------------------------------- personalised SD-1.5 (LDM single file)
def load_ldm_checkpoint(
    path: str | Path, unet: UNet2DConditionModel, vae: AutoencoderKL
) -> tuple[UNet2DConditionModel, AutoencoderKL]:
    """Replace the UNet (and the VAE when the file has one: "Novae" files keep SD-1.5's) from an LDM file."""
    path = Path(path)
    checkpoint = read_state_dict(path)
    if not any(k.startswith(LDM_UNET_PREFIX) for k in checkpoint):
        raise CheckpointError(f"{path}: no `{LDM_UNET_PREFIX}*` keys; not a single-file Stable Diffusion checkpoint")
    load_strict(unet, convert_ldm_unet_checkpoint(checkpoint, dict(unet.config)), path, "Stable Diffusion UNet")
    if any(k.startswith(LDM_VAE_PREFIX) for k in checkpoint):
        load_strict(vae, convert_ldm_vae_checkpoint(checkpoint, dict(vae.config)), path, "Stable Diffusion VAE")
    return unet, vae
