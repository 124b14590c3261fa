"""The noise schedule 360DVD (AnimateDiff v1) samples with: DDIM over linear betas 0.00085-0.012.

SD-1.5's own folder ships a PNDM scheduler with scaled-linear betas; AnimateDiff was trained with linear betas,
so the schedule is fixed here rather than read from the base model's folder.
"""

from diffusers import DDIMScheduler

ANIMATEDIFF_SCHEDULE = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "linear",
    "steps_offset": 1,
    "clip_sample": False,
}


def animatediff_ddim_scheduler() -> DDIMScheduler:
    return DDIMScheduler(**ANIMATEDIFF_SCHEDULE)
