"""Test-only writers of checkpoints in the PUBLISHED layouts (from tiny random models), so the loaders are
exercised on exactly the key naming real files have: the 360-Adapter under `state_dict` with `module.`, the
AnimateDiff v1 motion module with `temporal_transformer`/`attention_blocks`/`norms` names and `pos_encoder.pe`
buffers, and an SD-1.5 diffusers folder."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch
from diffusers import MotionAdapter


def adapter_checkpoint(adapter: torch.nn.Module, path: Path, wrapped: bool, module_prefix: bool) -> Path:
    state = {("module." if module_prefix else "") + k: v.clone() for k, v in adapter.state_dict().items()}
    torch.save({"epoch": 1, "global_step": 10, "state_dict": state} if wrapped else state, path)
    return path


def _sinusoid(length: int, dim: int) -> torch.Tensor:
    position = torch.arange(length).unsqueeze(1)
    div = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
    pe = torch.zeros(1, length, dim)
    pe[0, :, 0::2], pe[0, :, 1::2] = torch.sin(position * div), torch.cos(position * div)
    return pe


def original_motion_keys(motion: MotionAdapter) -> dict[str, torch.Tensor]:
    """diffusers MotionAdapter weights renamed to the original AnimateDiff v1 layout, with pe buffers."""
    renames = [
        (".norm1.", ".norms.0."),
        (".norm2.", ".norms.1."),
        (".norm3.", ".ff_norm."),
        (".attn1.", ".attention_blocks.0."),
        (".attn2.", ".attention_blocks.1."),
    ]
    state: dict[str, torch.Tensor] = {}
    for key, value in motion.state_dict().items():
        if key.endswith("pos_embed.pe"):
            continue  # diffusers' own buffer; the original file has one `pos_encoder.pe` per attention instead
        key = re.sub(r"(motion_modules\.\d+)\.", r"\1.temporal_transformer.", key)
        for new, old in renames:
            key = key.replace(new, old)
        state[key] = value.clone()
        if key.endswith("attention_blocks.0.to_q.weight") or key.endswith("attention_blocks.1.to_q.weight"):
            pe_key = key.replace("to_q.weight", "pos_encoder.pe")
            state[pe_key] = _sinusoid(motion.config.motion_max_seq_length, value.shape[1])
    return state


def motion_checkpoint(motion: MotionAdapter, path: Path, wrapped: bool) -> Path:
    """The .ckpt plus, beside it, the config of this (tiny) architecture (mm_sd_v14's is the default)."""
    state = original_motion_keys(motion)
    torch.save({"state_dict": state} if wrapped else state, path)
    config = {k: v for k, v in motion.config.items() if not k.startswith("_")}
    path.with_suffix(".json").write_text(json.dumps(config, default=list))
    return path


def sd15_folder(components: dict, folder: Path) -> Path:
    for name, part in (
        ("vae", "vae"),
        ("text_encoder", "text_encoder"),
        ("tokenizer", "tokenizer"),
        ("unet", "unet2d"),
    ):
        components[part].save_pretrained(folder / name)
    return folder


# --------------------------------------------------------------------------- original-SD (LDM) single file
_UNET_RESNET = [
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("time_emb_proj", "emb_layers.1"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("conv_shortcut", "skip_connection"),
]
_VAE_ATTENTION = [("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")]


def _rename_inner(rest: str, pairs: list[tuple[str, str]]) -> str:
    for new, old in pairs:
        if rest.startswith(new + "."):
            return old + rest[len(new) :]
    return rest


def ldm_unet_key(key: str, layers: int = 2) -> str:
    """A diffusers SD-1.5 UNet key in the original LDM naming (what convert_ldm_unet_checkpoint reads)."""
    fixed = {
        "conv_in": "input_blocks.0.0",
        "time_embedding.linear_1": "time_embed.0",
        "time_embedding.linear_2": "time_embed.2",
        "conv_norm_out": "out.0",
        "conv_out": "out.2",
    }
    for new, old in fixed.items():
        if key.startswith(new + "."):
            return old + key[len(new) :]
    parts = key.split(".")
    if parts[0] == "down_blocks":
        block, kind = int(parts[1]), parts[2]
        if kind == "downsamplers":
            return f"input_blocks.{3 + 3 * block}.0.op." + ".".join(parts[5:])
        layer, rest = int(parts[3]), ".".join(parts[4:])
        index = 1 + block * (layers + 1) + layer
        return (
            f"input_blocks.{index}.0.{_rename_inner(rest, _UNET_RESNET)}"
            if kind == "resnets"
            else f"input_blocks.{index}.1.{rest}"
        )
    if parts[0] == "mid_block":
        rest = ".".join(parts[3:])
        if parts[1] == "attentions":
            return f"middle_block.1.{rest}"
        return f"middle_block.{0 if parts[2] == '0' else 2}.{_rename_inner(rest, _UNET_RESNET)}"
    if parts[0] == "up_blocks":
        block, kind = int(parts[1]), parts[2]
        if kind == "upsamplers":  # after the resnet, and after the attention when the block has one
            return f"output_blocks.{block * (layers + 1) + layers}.{{up}}.conv." + ".".join(parts[5:])
        layer, rest = int(parts[3]), ".".join(parts[4:])
        index = block * (layers + 1) + layer
        return (
            f"output_blocks.{index}.0.{_rename_inner(rest, _UNET_RESNET)}"
            if kind == "resnets"
            else f"output_blocks.{index}.1.{rest}"
        )
    raise KeyError(key)


def ldm_vae_key(key: str, blocks: int) -> str:
    """A diffusers KL-VAE key in the original LDM naming (what convert_ldm_vae_checkpoint reads)."""
    parts = key.split(".")
    if parts[0] in ("quant_conv", "post_quant_conv"):
        return key
    side, what = parts[0], parts[1]
    if what in ("conv_in", "conv_out"):
        return key
    if what == "conv_norm_out":
        return f"{side}.norm_out." + ".".join(parts[2:])
    if what == "mid_block":
        rest = ".".join(parts[4:])
        if parts[2] == "attentions":
            return f"{side}.mid.attn_1.{_rename_inner(rest, _VAE_ATTENTION)}"
        return f"{side}.mid.block_{int(parts[3]) + 1}.{rest.replace('conv_shortcut', 'nin_shortcut')}"
    level = int(parts[2]) if side == "encoder" else blocks - 1 - int(parts[2])
    if parts[3] in ("downsamplers", "upsamplers"):
        name = "downsample" if side == "encoder" else "upsample"
        return f"{side}.{'down' if side == 'encoder' else 'up'}.{level}.{name}.conv." + ".".join(parts[6:])
    rest = ".".join(parts[5:]).replace("conv_shortcut", "nin_shortcut")
    return f"{side}.{'down' if side == 'encoder' else 'up'}.{level}.block.{parts[4]}.{rest}"


def ldm_checkpoint(unet, vae, path: Path, with_vae: bool = True) -> Path:
    """A personalised-model single file: `model.diffusion_model.*` (+ `first_stage_model.*` unless Novae)."""
    from safetensors.torch import save_file

    attention_up = {
        int(k.split(".")[1]) for k in unet.state_dict() if k.startswith("up_blocks") and ".attentions." in k
    }
    state = {}
    for key, value in unet.state_dict().items():
        ldm = ldm_unet_key(key, unet.config.layers_per_block)
        if "{up}" in ldm:
            ldm = ldm.replace("{up}", "2" if int(key.split(".")[1]) in attention_up else "1")
        state["model.diffusion_model." + ldm] = value.clone()
    if with_vae:
        blocks = len(vae.config.block_out_channels)
        for key, value in vae.state_dict().items():
            # LDM's VAE attention projections are 1x1 convolutions
            if ".attentions." in key and key.endswith("weight") and value.ndim == 2:
                value = value[:, :, None, None]
            state["first_stage_model." + ldm_vae_key(key, blocks)] = value.clone()
    state["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77)[None]
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, path)
    else:
        torch.save({"state_dict": state}, path)
    return path
