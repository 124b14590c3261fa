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
