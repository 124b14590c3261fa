"""The 360 enhancement techniques applied while sampling: the published schedule, latent rotation.

Circular padding lives in `models.circular_padding`; the latitude-aware loss belongs to training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.schedulers import SchedulerMixin

from models.solvers import transform_solver_state


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


@dataclass
class LatentRotation:
    """The latent rotation as one operation: after every step everything with the latents' spatial layout turns
    by `shift` latent columns together, the latents and the solver's history (its stored model outputs and
    previous sample); what is kept unturned (the adapter features, encoded once) is read turned by the total."""

    width: int  # latent width
    shift: int  # per step; 0: no rotation
    total: int = 0  # columns turned so far

    def turn(self, latents: torch.Tensor, scheduler: SchedulerMixin) -> torch.Tensor:
        transform_solver_state(scheduler, lambda x: roll_width(x, self.shift), latents)
        self.total += self.shift
        return roll_width(latents, self.shift)

    def features(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """The adapter features facing where the latents face now."""
        return roll_features(features, self.total, self.width)

    def undo(self, x: torch.Tensor) -> torch.Tensor:
        """`x` (laid out like the latents now) facing where the output faces: the net rotation undone."""
        return roll_width(x, -(self.total % self.width))

    def redo(self, x: torch.Tensor) -> torch.Tensor:
        """The inverse of `undo`: `x`, facing where the output faces, turned to face where the latents face now."""
        return roll_width(x, self.total % self.width)
