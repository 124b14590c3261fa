"""Two-stage refine ("hires fix") for outputs above the native size: the latent upscaling between the sizes a
refined call denoises at (models/refine_plan.py says which).

A refined call first generates the whole panorama at a size that fits one spatial window (the native size), where
the model composes the picture as it was trained to; then, 2x at a time, it upscales the latents, noises them
again to `refine_strength` of the schedule and denoises the rest of the schedule in spatial windows. The windows
then add detail to a composition they are given instead of composing each window on its own, which repeats
content across windows (MultiDiffusion, DynamicScaler). The latents are upscaled, not decoded frames: decoding,
resizing and encoding again costs a VAE round trip at the larger size (an untiled encoder's activations grow with
the area) and, measured with random weights, kept the composition worse (docs/performance.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def resize_flow(flow: torch.Tensor | None, height: int, width: int) -> torch.Tensor | None:
    """The (frames, 3, H, W) flow condition at a stage's size: its colour picture area-averaged, as the authors
    resize a flow video to the output size (the colours are not re-scaled for the smaller picture)."""
    if flow is None or tuple(flow.shape[-2:]) == (height, width):
        return flow
    return F.interpolate(flow.float(), size=(height, width), mode="area")


def upscale_latents(latents: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, C, F, h, w) latents -> (B, C, F, height, width), bicubic, wrapping around the panorama's width: the
    panorama is tiled three times side by side and the middle copy kept, so the first and last columns are
    interpolated from each other as any neighbours are (the height is clamped at the poles)."""
    batch, frames_per_video = latents.shape[0], latents.shape[2]
    frames = latents.transpose(1, 2).flatten(0, 1).float()  # bicubic needs float32 on CPUs
    tiled = torch.cat([frames, frames, frames], dim=-1)
    upscaled = F.interpolate(tiled, size=(height, 3 * width), mode="bicubic", align_corners=False)
    return upscaled[..., width : 2 * width].unflatten(0, (batch, frames_per_video)).transpose(1, 2).to(latents.dtype)
