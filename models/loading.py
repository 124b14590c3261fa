"""Assembling a ready pipeline from a registry entry or a saved model folder, offline and strictly."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel, UNetMotionModel
from transformers import CLIPTextModel, CLIPTokenizer

from models.adapter import Adapter360
from models.checkpoints import load_adapter, load_ldm_checkpoint, load_motion_adapter
from models.devices import default_dtype, select_device
from models.errors import CheckpointError
from models.pipeline import FOLDER_FORMAT, Panorama360Pipeline
from models.registry import ModelSpec
from models.scheduler import animatediff_ddim_scheduler
from models.tiny import build_tiny_pipeline

SD15_PARTS = ("vae", "text_encoder", "tokenizer", "unet")


def _offline() -> None:
    # Weights are local paths only: a hub lookup would hang or fail on machines without internet.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _require(paths: list[Path], what: str) -> None:
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise CheckpointError(f"{what}: missing {', '.join(missing)}; check the paths in the model registry")


def load_sd15(folder: Path, dtype: torch.dtype | None = None) -> dict:
    """VAE, text encoder, tokenizer and image UNet of a Stable Diffusion 1.5 diffusers folder, read straight
    into `dtype` (memory-mapped where the stored dtype is already the one wanted)."""
    _require([folder / part for part in SD15_PARTS], f"Stable Diffusion folder {folder}")
    try:
        return {
            "vae": AutoencoderKL.from_pretrained(folder / "vae", local_files_only=True, torch_dtype=dtype),
            "text_encoder": CLIPTextModel.from_pretrained(folder / "text_encoder", local_files_only=True, dtype=dtype),
            "tokenizer": CLIPTokenizer.from_pretrained(folder / "tokenizer", local_files_only=True),
            "unet2d": UNet2DConditionModel.from_pretrained(folder / "unet", local_files_only=True, torch_dtype=dtype),
        }
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"Stable Diffusion folder {folder} is incomplete or damaged: {exc}") from exc


def load_pipeline(
    spec: ModelSpec, device: str | torch.device | None = None, dtype: torch.dtype | None = None
) -> Panorama360Pipeline:
    """The pipeline a registry entry names (the built-in tiny model, a saved folder, or published parts), allowed
    the video lengths the entry's limits allow, with the entry's native size as its default spatial window."""
    pipe = _load_weights(spec, device, dtype)
    pipe.max_frames = spec.generation_limits.max_frames
    pipe.native_size = spec.native_size
    return pipe


def _load_weights(spec: ModelSpec, device: str | torch.device | None, dtype: torch.dtype | None) -> Panorama360Pipeline:
    if spec.builtin == "tiny":
        return build_tiny_pipeline().to(device, dtype)
    if spec.folder is not None:
        return load_pipeline_folder(spec.folder, device, dtype)
    _offline()
    _require(spec.weight_paths(), f"model {spec.name!r}")
    device = select_device(device)
    dtype = dtype or default_dtype(device)
    parts = load_sd15(spec.sd15, dtype)
    if spec.base_checkpoint is not None:
        parts["unet2d"], parts["vae"] = load_ldm_checkpoint(spec.base_checkpoint, parts["unet2d"], parts["vae"])
    motion = load_motion_adapter(spec.motion_module, list(parts["unet2d"].config.block_out_channels))
    return Panorama360Pipeline.from_components(
        **parts,
        motion_adapter=motion,
        adapter=load_adapter(spec.adapter),
        scheduler=animatediff_ddim_scheduler(),
        device=device,
        dtype=dtype,
    )


def load_pipeline_folder(
    folder: str | Path, device: str | torch.device | None = None, dtype: torch.dtype | None = None
) -> Panorama360Pipeline:
    """A folder written by `Panorama360Pipeline.save_pretrained` (or `dvd360 export-tiny`)."""
    _offline()
    folder = Path(folder)
    index_path = folder / "model_index.json"
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{folder}: not a dvd360 model folder (cannot read model_index.json: {exc})") from exc
    if index.get("format") != FOLDER_FORMAT:
        raise CheckpointError(f"{index_path}: format {index.get('format')!r} is not {FOLDER_FORMAT!r}")
    _require([folder / p for p in (*SD15_PARTS, "adapter", "scheduler")], f"model folder {folder}")
    try:
        return Panorama360Pipeline(
            vae=AutoencoderKL.from_pretrained(folder / "vae", local_files_only=True),
            text_encoder=CLIPTextModel.from_pretrained(folder / "text_encoder", local_files_only=True),
            tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer", local_files_only=True),
            unet=UNetMotionModel.from_pretrained(folder / "unet", local_files_only=True),
            adapter=Adapter360.from_pretrained(folder / "adapter", local_files_only=True),
            scheduler=DDIMScheduler.from_pretrained(folder / "scheduler", local_files_only=True),
            v1_norms=bool(index.get("v1_norms", True)),
            device=device,
            dtype=dtype,
        )
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"model folder {folder} is incomplete or damaged: {exc}") from exc
