"""torch.compile over whole jobs: the first job compiles, later jobs of the same shape recompile nothing."""

import numpy as np
import pytest
import torch
from torch._dynamo.utils import counters

from models.pipeline import Panorama360Pipeline
from models.tiny import (
    TINY_ADAPTER_CONFIG,
    TINY_CHANNELS,
    TINY_MOTION_CONFIG,
    TINY_UNET_CONFIG,
    TINY_VAE_CONFIG,
    build_random_components,
)

# 2 steps switch both: step 0 adapter on and zero padding, step 1 adapter off and width-circular padding
JOB = {"num_frames": 2, "height": 64, "width": 128, "num_inference_steps": 2}


def shallow_tiny_pipeline() -> Panorama360Pipeline:
    """The tiny model cut to two levels (a cross-attention block and a plain one, down and up) with one ResNet and
    one motion module each: every module class, hook and switch of the full model, a quarter of the layers for
    dynamo to trace (the test took 86 s on a 2-core AVX2 VM with all of them, 48-62 s with half)."""
    channels = TINY_CHANNELS[1:3]
    parts = build_random_components(
        TINY_UNET_CONFIG
        | {
            "block_out_channels": channels,
            "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
            "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
            "layers_per_block": 1,
        },
        TINY_MOTION_CONFIG | {"block_out_channels": channels, "motion_layers_per_block": 1},
        TINY_VAE_CONFIG,
        TINY_ADAPTER_CONFIG | {"channels": channels},
        seed=0,
    )
    return Panorama360Pipeline.from_components(**parts)


def compiled_graphs() -> int:
    return counters["stats"]["unique_graphs"]


@pytest.fixture()
def fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


@pytest.mark.slow
@pytest.mark.timeout(300)  # dynamo traces the UNet and the VAE decoder once per schedule phase: ~50 s on 2 cores
def test_no_recompiles_after_the_first_job_and_eager_outputs(fresh_dynamo):
    """dynamo's guards over whole jobs (backend `eager`: the graphs run as traced). `aot_eager` stops on a torch
    error in the traced graph ("Expected X.is_contiguous(memory_format)"); inductor is left to a GPU run."""
    backend = "eager"
    flow = torch.rand(2, 3, 64, 128, generator=torch.Generator().manual_seed(0)) * 2 - 1
    pipe = shallow_tiny_pipeline()
    eager = [pipe("a volcano", flow=flow, seed=s, **JOB).frames for s in (0, 1, 2)]
    pipe.enable_compile(backend=backend)
    compiled = [pipe("a volcano", flow=flow, seed=0, **JOB).frames]
    after_first = compiled_graphs()
    assert after_first > 0
    compiled += [pipe("a volcano", flow=flow, seed=s, **JOB).frames for s in (1, 2)]
    assert compiled_graphs() == after_first, dict(counters["recompiles"]) or dict(counters["stats"])
    for ours, reference in zip(compiled, eager, strict=True):
        np.testing.assert_allclose(ours, reference, atol=1e-4)
