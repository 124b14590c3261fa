"""Two-stage refine ("hires fix") for outputs above the native size: the sizes a refined call denoises at, and the
latent upscaling between them.

A refined call first generates the whole panorama at a size that fits one spatial window (the native size), where
the model composes the picture as it was trained to; then, 2x at a time, it upscales the latents, noises them
again to `refine_strength` of the schedule and denoises the rest of the schedule in spatial windows. The windows
then add detail to a composition they are given instead of composing each window on its own, which repeats
content across windows (MultiDiffusion, DynamicScaler). The latents are upscaled, not decoded frames: decoding,
resizing and encoding again costs a VAE round trip at the larger size (an untiled encoder's activations grow with
the area) and, measured with random weights, kept the composition worse (docs/performance-highres.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from models.generation_params import MIN_HEIGHT


def refine_sizes(height: int, width: int, window: tuple[int, int]) -> list[tuple[int, int]]:
    """The (height, width) pixel sizes a refined call denoises at, smallest first, ending at the output size: the
    output's height halved (down to a multiple of 64 pixels; the width stays twice the height) until it fits
    `window`. One size when the output already fits."""
    sizes = [(height, width)]
    while (sizes[0][0] > window[0] or sizes[0][1] > window[1]) and sizes[0][0] > MIN_HEIGHT:
        half = max(MIN_HEIGHT, sizes[0][0] // 2 // MIN_HEIGHT * MIN_HEIGHT)
        sizes.insert(0, (half, 2 * half))
    return sizes


def refine_start(num_steps: int, strength: float) -> int:
    """The first step a refine stage denoises: the last `strength` of the schedule, as diffusers' img2img
    pipelines count it, and always at least the last step."""
    if not 0 < strength <= 1:
        raise ValueError(f"refine_strength must be in (0, 1], got {strength}")
    return min(num_steps - int(num_steps * strength), num_steps - 1)


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
