"""Sampling solvers: a name -> a diffusers scheduler on the pipeline's noise schedule, and the solver state that
has the latents' spatial layout (what the latent rotation must turn with them).

Multistep solvers (DPM-Solver++, UniPC) extrapolate from the model outputs of earlier steps, which they keep
(`model_outputs`; UniPC also the previous sample, `last_sample`, for its corrector). The pipeline rolls the
latents along the width after every step, so that history must roll too, or the solver extrapolates from
outputs facing elsewhere and diverges (issue 27: DPM++ at 25 steps ended 20x the latents' norm away).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler
from diffusers.schedulers import SchedulerMixin

from models.generation_params import SOLVERS

# Each solver's class and the options set on top of the pipeline scheduler's config (the AnimateDiff schedule:
# linear betas 0.00085-0.012, 1000 training steps, steps_offset 1), chosen by measurement
# (docs/performance.md, benchmarks/bench_solvers.py). "trailing" timesteps start at t = 999, pure noise:
# with DDIM's "leading" spacing 10 steps start at t = 901 and both solvers ended as far from the 100-step solution
# as DDIM itself (0.40). Second order, a first-order last step (UniPC's order-2 update into sigma zero gives inf;
# bh1 gave NaN), ending at sigma zero like DDIM's `set_alpha_to_one`. Karras sigmas were 16-20% closer at 5-10
# steps on the tiny model but move the adapter's and the circular padding's step-fraction switches to other
# noise levels than the published schedule's: not kept. Third order (DPM++ 3M, UniPC-3) and DEIS were no closer.
SOLVER_CLASSES: dict[str, tuple[type[SchedulerMixin], dict[str, Any]]] = {
    "ddim": (DDIMScheduler, {}),
    "dpmpp_2m": (
        DPMSolverMultistepScheduler,
        {
            "algorithm_type": "dpmsolver++",
            "solver_order": 2,
            "solver_type": "midpoint",
            "lower_order_final": True,
            "final_sigmas_type": "zero",
            "timestep_spacing": "trailing",
        },
    ),
    "unipc": (
        UniPCMultistepScheduler,
        {
            "solver_order": 2,
            "solver_type": "bh2",
            "lower_order_final": True,
            "final_sigmas_type": "zero",
            "timestep_spacing": "trailing",
        },
    ),
}
assert tuple(SOLVER_CLASSES) == SOLVERS, "models.generation_params.SOLVERS names the solvers the API accepts"


def make_scheduler(name: str, base: SchedulerMixin) -> SchedulerMixin:
    """A fresh scheduler of solver `name` on `base`'s noise schedule (fresh: `set_timesteps` and `step` mutate it).
    "ddim" on the pipeline's DDIM scheduler is exactly the scheduler the pipeline always made."""
    try:
        cls, options = SOLVER_CLASSES[name]
    except KeyError:
        raise ValueError(f"unknown scheduler {name!r}; choose one of {', '.join(SOLVER_CLASSES)}") from None
    return cls.from_config(base.config, **options)


def transform_solver_state(
    scheduler: SchedulerMixin, fn: Callable[[torch.Tensor], torch.Tensor], like: torch.Tensor
) -> list[str]:
    """Replace every tensor the scheduler keeps with the shape of `like` (the latents), alone or in a list, by
    `fn(tensor)`; returns the attributes changed. Shape is the test because diffusers' schedulers keep exactly two
    kinds of tensors: per-pixel state shaped like the sample, and 1-D schedules (sigmas, timesteps, alphas)."""

    def spatial(value: object) -> bool:
        return isinstance(value, torch.Tensor) and value.shape == like.shape

    changed = []
    for name, value in vars(scheduler).items():
        if spatial(value):
            setattr(scheduler, name, fn(value))
        elif isinstance(value, list) and any(spatial(v) for v in value):
            setattr(scheduler, name, [fn(v) if spatial(v) else v for v in value])
        else:
            continue
        changed.append(name)
    return changed


def predicted_clean(
    scheduler: SchedulerMixin, out: Any, noise_pred: torch.Tensor, t: torch.Tensor, latents: torch.Tensor
) -> torch.Tensor:
    """The step's prediction of the clean latents (for live previews): DDIM reports its own; the multistep
    solvers report none, so it is computed the same way from the noise prediction at `t`."""
    x0 = getattr(out, "pred_original_sample", None)
    if x0 is not None:
        return x0
    alpha_prod = scheduler.alphas_cumprod[int(t)].to(latents.device, latents.dtype)
    return (latents - (1 - alpha_prod) ** 0.5 * noise_pred) / alpha_prod**0.5
