"""What a generation request may ask of a model: each model's defaults and limits, one source for the API, the CLI
and the page (`GET /models` publishes them). Torch-free: the API imports it.

The built-in tiny model runs on a CPU, so its defaults are small and fast; a real SD-1.5 model defaults to the
published 360DVD sampling (16 x 512 x 1024, DDIM 25 steps, guidance 7.5, 8 fps). A request may name a `quality`
instead of a solver and steps: each model has presets for it (`QualityPresets`), and `resolve_sampling` applies
them.

A model's native size is the size its UNet was trained at (512 x 1024 for 360DVD on SD-1.5; 64 x 128 for the tiny
model, whose UNet has the smallest latent the 4 down blocks allow). Larger outputs are denoised in spatial windows
of the native size (`models.spatial_windows`), so they cost memory like the native size and time like their area."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

Solver = Literal["ddim", "dpmpp_2m", "unipc"]  # the pipeline's `scheduler` choices (models.solvers)
SOLVERS: tuple[str, ...] = get_args(Solver)
DEFAULT_SOLVER = "ddim"  # the published sampling
Quality = Literal["draft", "standard", "high"]
QUALITIES: tuple[str, ...] = get_args(Quality)
MIN_HEIGHT = 64  # one latent row block of the UNet's 4 down blocks (8 x 8)
NATIVE_HEIGHT = 512  # SD-1.5 models (360DVD was trained at 512 x 1024)
TINY_NATIVE_HEIGHT = 64
ABSOLUTE_MAX_FRAMES = 1024  # what a registry may allow at most: a sanity bound, not a default


class GenerationDefaults(BaseModel):
    """The values a request gets for every field it leaves out."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_frames: int = Field(16, ge=1)
    height: int = Field(512, ge=MIN_HEIGHT)
    width: int = Field(1024, ge=2 * MIN_HEIGHT)
    steps: int = Field(25, ge=1)
    guidance_scale: float = Field(7.5, ge=0)
    fps: int = Field(8, ge=1, le=60)


class GenerationLimits(BaseModel):
    """The largest request a model accepts (the server's own caps, e.g. DVD360_MAX_HEIGHT, apply on top)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_frames: int = Field(128, ge=1, le=ABSOLUTE_MAX_FRAMES)
    # 2048 x 4096: the widest video phones and headsets play (the usual WebGL texture limit), H.264 level 5.1
    max_height: int = Field(2048, ge=MIN_HEIGHT)
    max_steps: int = Field(100, ge=1, le=1000)


class SamplingPreset(BaseModel):
    """What one quality level samples with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scheduler: Solver
    steps: int = Field(ge=1)


QualityPresets = Mapping[Quality, SamplingPreset]

TINY_DEFAULTS = GenerationDefaults(num_frames=8, height=64, width=128, steps=4)
# 256 x 512: 16 x the tiny model's native area, enough to exercise spatial windows and still seconds on a CPU
TINY_LIMITS = GenerationLimits(max_frames=128, max_height=256, max_steps=100)

# Chosen from docs/performance.md: relative L2 error of the final latents to the 100-step DDIM solution,
# latent rotation on, random weights at 64 x 128, full-size / tiny (DDIM-25, the published sampling: 0.160 / 0.164).
# UniPC was the closest solver at every step count below 25 on both sizes. SD-1.5: draft 5 steps (0.173 / 0.157:
# DDIM-25's error at a fifth of its steps; on an H100 about 1.6 s for 16 x 512 x 1024 compiled, projected from
# README's step and decode times), standard 10 (0.091 / 0.088), high 25 (0.056: where every solver meets DDIM-100's
# own distance from the converged solution). The tiny model (CPU; its default, DDIM 4 steps: 0.72): draft 3
# (0.247), standard 6 (0.134), high 15 (0.068).
SD15_PRESETS: QualityPresets = {
    "draft": SamplingPreset(scheduler="unipc", steps=5),
    "standard": SamplingPreset(scheduler="unipc", steps=10),
    "high": SamplingPreset(scheduler="unipc", steps=25),
}
TINY_PRESETS: QualityPresets = {
    "draft": SamplingPreset(scheduler="unipc", steps=3),
    "standard": SamplingPreset(scheduler="unipc", steps=6),
    "high": SamplingPreset(scheduler="unipc", steps=15),
}

# Fields every request must stay within whatever the model (absolute bounds, also in the API schema).
GUIDANCE_MAX = 30.0
FPS_MAX = 60


def request_params(given: dict[str, Any], defaults: GenerationDefaults) -> dict[str, Any]:
    """The given values with the model's defaults where a value is None; one side of the size gives the other (2:1)."""
    params = dict(given)
    if params.get("height") is not None and params.get("width") is None:
        params["width"] = 2 * params["height"]
    elif params.get("width") is not None and params.get("height") is None:
        params["height"] = params["width"] // 2
    for name, value in defaults.model_dump().items():
        if params.get(name) is None:
            params[name] = value
    return params


def limit_errors(params: dict[str, Any], limits: GenerationLimits, server_max_height: int | None = None) -> list:
    """(field, message) for each value over the model's limits; empty when the request fits."""
    errors = []
    if params["num_frames"] > limits.max_frames:
        errors.append(("num_frames", f"num_frames {params['num_frames']} is above this model's {limits.max_frames}"))
    max_height = min(limits.max_height, server_max_height or limits.max_height)
    if params["height"] > max_height:
        errors.append(("height", f"height {params['height']} is above the maximum {max_height} for this model"))
    if params["steps"] > limits.max_steps:
        errors.append(("steps", f"steps {params['steps']} is above this model's {limits.max_steps}"))
    return errors


def panorama_size_errors(height: int | None, width: int | None) -> list[tuple[str, str]]:
    """The one ERP size rule, width = 2 x height with height a multiple of 64, as (field, message) for each side
    that breaks it (a side left out is not judged): the field named is the one to change."""
    errors = []
    if height is not None and height % 64:
        errors.append(("height", f"height must be a multiple of 64 (e.g. 512 for 512 x 1024), got {height}"))
    if width is not None and height is not None and width != 2 * height:
        errors.append(("width", f"width must be 2 x height (e.g. 512 x 1024), got {height} x {width}"))
    elif width is not None and height is None and width % 128:
        errors.append(("width", f"width must be 2 x height, a multiple of 128 (e.g. 1024), got {width}"))
    return errors


def resolve_sampling(
    quality: str | None,
    scheduler: str | None,
    steps: int | None,
    presets: QualityPresets,
    defaults: GenerationDefaults,
) -> tuple[str, int]:
    """(solver, steps) for a request: each field the request gives wins; a field it leaves out comes from its
    `quality`'s preset when it names one, else from the model's defaults (DDIM, the model's default steps), so a
    request that names neither is sampled as before presets existed."""
    if quality is not None and quality not in presets:
        raise ValueError(f"unknown quality {quality!r}; choose one of {', '.join(QUALITIES)}")
    preset = presets[quality] if quality is not None else None
    if scheduler is None:
        scheduler = preset.scheduler if preset is not None else DEFAULT_SOLVER
    if steps is None:
        steps = preset.steps if preset is not None else defaults.steps
    return scheduler, steps
