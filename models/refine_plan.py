"""The plan of a call, torch-free (the API's cost estimate reads it as the pipeline does): the sizes it denoises at
and the steps each denoises. Above the spatial window a refined call generates at a size that fits one window, then
2x at a time denoises the last `strength` of the schedule at each larger size (models/refine.py); an unrefined
call, or one that fits a window, is one stage."""

from __future__ import annotations

from dataclasses import dataclass

from models.generation_params import MIN_HEIGHT


@dataclass(frozen=True)
class Stage:
    height: int  # pixels
    width: int
    first_step: int  # the first of the schedule's steps this stage denoises


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


def refine_plan(
    height: int, width: int, window: tuple[int, int], steps: int, refine: bool = True, strength: float = 0.5
) -> list[Stage]:
    """The stages of a call for a (height, width) output with a `window`-sized UNet and `steps` steps."""
    sizes = refine_sizes(height, width, window) if refine else [(height, width)]
    starts = [0] + [refine_start(steps, strength)] * (len(sizes) - 1)
    return [Stage(h, w, first) for (h, w), first in zip(sizes, starts, strict=True)]
