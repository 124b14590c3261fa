"""The 360 enhancement techniques applied while sampling: the published schedule, latent rotation.

Circular padding lives in `models.circular_padding`; the latitude-aware loss belongs to training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Enhancements:
    """Switches for the sampling-time 360 techniques (all on is the published behaviour, with rolled features).

    `rotate_features=False` reproduces the authors' released loop exactly, for comparison: its adapter features
    are never rolled (they drift out of alignment with the rotating latents) and its video keeps whatever net
    rotation the steps leave (a quarter turn after 5 steps).
    """

    latent_rotation: bool = True
    rotate_features: bool = True
    circular_padding: bool = True

    @property
    def undo_net_rotation(self) -> bool:
        """The fixed loop rolls the latents back before decoding, so the video faces where the flow faces."""
        return self.rotate_features


def adapter_active(step: int, total_steps: int) -> bool:
    """Adapter features guide steps 0..(T // 4) * 3 (19 of 25), then zeros (the published schedule)."""
    return step <= (total_steps // 4) * 3


def circular_padding_active(step: int, total_steps: int) -> bool:
    """Width-circular padding from step T // 2 to the end (and always during VAE decode)."""
    return step >= total_steps // 2


def rotation_shift(latent_width: int) -> int:
    """Latents roll by a quarter turn of the panorama after every denoising step."""
    return latent_width // 4


def roll_width(x: torch.Tensor, shift: int) -> torch.Tensor:
    return torch.roll(x, shifts=shift, dims=-1) if shift % x.shape[-1] else x


def roll_features(features: list[torch.Tensor], latent_shift: int, latent_width: int) -> list[torch.Tensor]:
    """Roll each adapter feature by the latents' cumulative shift, scaled to that feature's width.

    Rolling the unrolled originals by the cumulative amount (rounded per level) keeps rounding errors from
    accumulating at the coarse levels, where a latent shift is not always a whole number of feature pixels.
    """
    return [roll_width(f, round(latent_shift * f.shape[-1] / latent_width)) for f in features]
