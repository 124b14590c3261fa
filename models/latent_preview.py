"""Live preview pictures that cost almost nothing: the predicted clean latent (x0) of a denoising step, mapped to RGB
with SD-1.5's linear latent-to-RGB approximation (a 4 x 3 matrix and a bias, no VAE pass), of the middle frame, as a
small equirectangular JPEG upscaled from latent resolution for display.

The factors are the widely used fit of SD-1.5's VAE decoder (ComfyUI's SD15 latent format): they apply to latents in
the UNet's (scaled) space and give roughly [-1, 1]; halving them and adding 0.5 gives [0, 1].
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

# rows: latent channels 1-4; columns: R, G, B
SD15_LATENT_RGB = torch.tensor(
    [
        [0.3512, 0.2297, 0.3227],
        [0.3250, 0.4974, 0.2350],
        [-0.2829, 0.1762, 0.2721],
        [-0.2120, -0.2616, -0.7177],
    ]
)
SD15_RGB_BIAS = torch.zeros(3)
MIN_WIDTH = 256  # display size floor: SD-1.5's latent of a 512 x 1024 video is 64 x 128
JPEG_QUALITY = 80


def latent_to_rgb(latent: torch.Tensor) -> np.ndarray:
    """(4, h, w) latent -> (h, w, 3) uint8 picture."""
    rgb = torch.einsum("chw,cr->hwr", latent.float().cpu(), SD15_LATENT_RGB) + SD15_RGB_BIAS
    return ((rgb / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def middle_frame(latents: torch.Tensor) -> torch.Tensor:
    """(1, C, F, h, w) video latents -> (C, h, w) of the middle frame."""
    return latents[0, :, latents.shape[2] // 2]


def preview_jpeg(latents: torch.Tensor, min_width: int = MIN_WIDTH) -> tuple[bytes, int, int]:
    """(1, 4, F, h, w) x0 latents -> (JPEG bytes, width, height) of the middle frame, 2:1, at least `min_width`
    wide (bilinear upscaling of the latent-resolution picture)."""
    picture = Image.fromarray(latent_to_rgb(middle_frame(latents)))
    width = max(min_width, picture.width)
    picture = picture.resize((width, width // 2), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue(), picture.width, picture.height
