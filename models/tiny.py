"""A tiny 360DVD model with random weights: the real code path in seconds, offline, for tests and demos.

Every component has the real architecture (SD-1.5 UNet layout with 4 down blocks, AnimateDiff motion modules,
the 360-Adapter, a KL VAE with 8x downsampling, a CLIP text encoder and a byte-level CLIP tokenizer) at widths
of 16-64 channels. It produces noise pictures, not content.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, MotionAdapter, UNet2DConditionModel
from tokenizers import pre_tokenizers
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from models.adapter import Adapter360
from models.scheduler import animatediff_ddim_scheduler

TINY_CHANNELS = (32, 32, 64, 64)
TINY_TEXT_DIM = 32

TINY_UNET_CONFIG = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "block_out_channels": TINY_CHANNELS,
    "layers_per_block": 2,
    "cross_attention_dim": TINY_TEXT_DIM,
    "attention_head_dim": 4,
    "norm_num_groups": 8,
}
TINY_MOTION_CONFIG = {
    "block_out_channels": TINY_CHANNELS,
    "motion_layers_per_block": 2,
    "motion_transformer_layers_per_block": 1,
    "motion_num_attention_heads": 2,
    "motion_norm_num_groups": 8,
    "motion_max_seq_length": 24,
    "use_motion_mid_block": False,
}
TINY_VAE_CONFIG = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (16, 16, 32, 32),
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 8,
    "sample_size": 64,
    "scaling_factor": 0.18215,
}
TINY_ADAPTER_CONFIG = {"channels": TINY_CHANNELS}


def tiny_tokenizer() -> CLIPTokenizer:
    """A byte-level CLIP tokenizer with no merges: every character is a token; nothing read from disk."""
    specials = ["<|startoftext|>", "<|endoftext|>"]
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens = specials + alphabet + [c + "</w>" for c in alphabet]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=[], model_max_length=77)


def random_text_encoder(vocab_size: int, hidden_size: int, layers: int, heads: int) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=4 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=77,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    return CLIPTextModel(config).eval()


def build_random_components(
    unet_config: dict,
    motion_config: dict,
    vae_config: dict,
    adapter_config: dict,
    text_layers: int = 2,
    text_heads: int = 2,
    seed: int = 0,
) -> dict:
    """A pipeline's parts with seeded random weights (the same seed gives the same model), any size."""
    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    return {
        "vae": AutoencoderKL(**vae_config).eval(),
        "text_encoder": random_text_encoder(
            len(tokenizer), unet_config["cross_attention_dim"], text_layers, text_heads
        ),
        "tokenizer": tokenizer,
        "unet2d": UNet2DConditionModel(**unet_config).eval(),
        "motion_adapter": MotionAdapter(**motion_config).eval(),
        "adapter": Adapter360(**adapter_config).eval(),
        "scheduler": animatediff_ddim_scheduler(),
    }


def build_tiny_components(seed: int = 0) -> dict:
    return build_random_components(
        TINY_UNET_CONFIG, TINY_MOTION_CONFIG, TINY_VAE_CONFIG, TINY_ADAPTER_CONFIG, seed=seed
    )


def build_tiny_pipeline(seed: int = 0, device: str | torch.device | None = None):
    """The whole tiny pipeline, ready to call (CPU unless a device is given)."""
    from models.pipeline import Panorama360Pipeline

    return Panorama360Pipeline.from_components(**build_tiny_components(seed), device=device)
