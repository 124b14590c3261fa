"""Cross-attention to the prompt, computed once per video rather than once per frame.

UNetMotionModel folds a video's frames into the batch, and AnimateDiff repeats the prompt's embeddings for every
frame, so each cross-attention layer projects the same 77 tokens to keys and values F times. Here the UNet is
given one context per video; the layer projects it once and lets all the video's frames attend to it, the
frames' queries laid end to end (attention is independent per query, so this is the same function). Measured
on 2 CPU cores, 8 frames: see README "Performance".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0


class PerVideoContextAttnProcessor:
    """For `Attention` layers with `is_cross_attention`; the context batch must divide the query batch
    (frames b-major: rows `v * F ... v * F + F - 1` belong to context `v`). Anything else goes to SDPA as is."""

    def __init__(self) -> None:
        self.fallback = AttnProcessor2_0()

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args,
        **kwargs,
    ) -> torch.Tensor:
        if not self._plain(attn, hidden_states, encoder_hidden_states, attention_mask):
            if encoder_hidden_states is not None and encoder_hidden_states.shape[0] != hidden_states.shape[0]:
                repeats = hidden_states.shape[0] // encoder_hidden_states.shape[0]
                encoder_hidden_states = encoder_hidden_states.repeat_interleave(repeats, dim=0)
            return self.fallback(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        rows, tokens, _ = hidden_states.shape
        videos = encoder_hidden_states.shape[0]
        query = attn.to_q(hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        heads, head_dim = attn.heads, query.shape[-1] // attn.heads
        # (rows, tokens, inner) is (videos, frames * tokens, inner) in memory: no copy to fold the frames.
        query = query.view(videos, -1, heads, head_dim).transpose(1, 2)
        key = key.view(videos, -1, heads, head_dim).transpose(1, 2)
        value = value.view(videos, -1, heads, head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(query, key, value)
        out = out.transpose(1, 2).reshape(rows, tokens, heads * head_dim)
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + hidden_states
        return out if attn.rescale_output_factor == 1 else out / attn.rescale_output_factor

    @staticmethod
    def _plain(
        attn: Attention,
        hidden_states: torch.Tensor,
        context: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
    ) -> bool:
        """The layout this processor handles: 3D queries, a context per video, no mask and no extra norms."""
        return (
            context is not None
            and hidden_states.ndim == 3
            and hidden_states.shape[0] % context.shape[0] == 0
            and attention_mask is None
            and attn.spatial_norm is None
            and attn.group_norm is None
            and not attn.norm_cross
            and attn.norm_q is None
            and attn.norm_k is None
        )


def use_per_video_context(unet: torch.nn.Module) -> int:
    """Give every cross-attention layer of `unet` the per-video processor; returns how many layers."""
    layers = [m for m in unet.modules() if isinstance(m, Attention) and m.is_cross_attention]
    processor = PerVideoContextAttnProcessor()  # stateless: one serves every layer
    for layer in layers:
        layer.set_processor(processor)
    return len(layers)
