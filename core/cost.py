"""Refuse up front what cannot finish: a request's cost is frames x pixels x steps over each stage it denoises (x2
with classifier-free guidance, which runs the UNet twice), times seconds per unit measured for the model kind on the
workers' device type. Spatial windows keep a step's time proportional to its area; a refined request adds a stage
per 2x of size (models/refine_plan.py, the same plan the pipeline follows); every solver calls the UNet once per
step. A request whose estimate is over the worker's time limit is a 422 naming the limit, instead of running
until the limit kills it. Torch-free (the API calls it).

Seconds per unit: ("tiny", "cpu") measured here by benchmarks/calibrate_cost.py (tiny model, 2 CPU cores shared by
many processes: CPU seconds per torch thread, 1.4e-5 to 3.5e-5 over three sizes, so 2.5e-5 is conservative); the
CUDA rows from one H100 (see each); set DVD360_COST_S_PER_UNIT to a figure measured on your workers (the same
script prints it)."""

from __future__ import annotations

from core.request import GenerationRequest
from core.settings import Settings
from models.refine_plan import refine_plan
from models.registry import ModelSpec

S_PER_UNIT = {
    ("tiny", "cpu"): 2.5e-5,  # measured: see the module docstring
    ("tiny", "cuda"): 2.0e-7,  # measured on one H100: 4 x 128 x 256, 4 steps, CFG in 0.21 s (kernel launches)
    # measured 2.4e-8 on one H100 (benchmarks/bench_model.py --size full: 16 x 512 x 1024, 25 steps, CFG in 9.9 s,
    # fp16); the default covers GPUs about 6x slower (L4/T4 class), which a time limit must not cut off
    ("sd15", "cuda"): 1.5e-7,
    ("sd15", "cpu"): 2.0e-5,  # estimate: ~100x the GPU
}
OVERHEAD_S = 5.0  # encoding the video, pictures, storing: seconds on top of the denoising loop


def model_kind(spec: ModelSpec) -> str:
    """Which row of S_PER_UNIT a registry entry uses: the built-in tiny model, or an SD-1.5-size model."""
    return "tiny" if spec.builtin == "tiny" else "sd15"


def units(request: GenerationRequest, spec: ModelSpec) -> float:
    """The work of a resolved request: frames x pixels x steps of each stage, twice with classifier-free guidance."""
    passes = 2 if request.guidance_scale > 1 else 1
    stages = refine_plan(request.height, request.width, spec.native_size, request.steps, request.refine)
    pixel_steps = sum(s.height * s.width * (request.steps - s.first_step) for s in stages)
    return request.num_frames * pixel_steps * passes


def estimated_seconds(request: GenerationRequest, spec: ModelSpec, settings: Settings) -> float:
    device = (settings.device or "cpu").split(":")[0]
    kind = model_kind(spec)
    rate = settings.cost_s_per_unit or S_PER_UNIT.get((kind, device), S_PER_UNIT[("sd15", device)])
    return OVERHEAD_S + units(request, spec) * rate


def cost_refusal(request: GenerationRequest, spec: ModelSpec, settings: Settings) -> str | None:
    """Why the (resolved) request cannot finish within the worker's time limit, or None."""
    estimate = estimated_seconds(request, spec, settings)
    limit = settings.task_soft_time_limit_s
    if estimate <= limit:
        return None
    return (
        f"this request would take about {estimate:.0f} s, over the workers' time limit of {limit} s "
        "(DVD360_TASK_SOFT_TIME_LIMIT_S); ask for fewer frames, a smaller size or fewer steps (quality: draft)"
    )
