"""Half precision, as a GPU runs the model, proven on the CPU: the whole tiny pipeline in fp16 and bf16 (adapter,
injection hook, circular padding from step T // 2, VAE decode) stays finite and close to fp32."""

import numpy as np
import pytest
import torch

from models.tiny import build_tiny_pipeline

# 2 steps: the adapter guides step 0, circular padding acts from step 1, the VAE decodes width-circular
JOB = {"num_frames": 2, "height": 64, "width": 128, "num_inference_steps": 2, "seed": 1}
# Measured on the tiny model (4 frames, 4 steps): fp16 max 0.0053 / mean 0.0005, bf16 max 0.035 / mean 0.0035
# off the fp32 video in [0, 1]; bf16 keeps 8 mantissa bits to fp16's 11.
TOLERANCE = {torch.float16: (0.02, 0.002), torch.bfloat16: (0.1, 0.01)}


@pytest.fixture(scope="module")
def flow():
    return torch.rand(2, 3, 64, 128, generator=torch.Generator().manual_seed(0)) * 2 - 1


@pytest.fixture(scope="module")
def fp32_frames(tiny_pipe, flow):
    return tiny_pipe("a volcano", flow=flow, **JOB).frames


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_half_precision_pipeline_is_finite_and_close_to_fp32(fp32_frames, flow, dtype):
    pipe = build_tiny_pipeline(seed=0).to("cpu", dtype)
    assert {p.dtype for m in (pipe.unet, pipe.vae, pipe.adapter, pipe.text_encoder) for p in m.parameters()} == {dtype}
    features = []
    hook = pipe.unet.down_blocks[0].register_forward_hook(lambda m, a, out: features.append(out[0].dtype))
    try:
        frames = pipe("a volcano", flow=flow, **JOB).frames
    finally:
        hook.remove()
    assert features == [dtype, dtype] and frames.dtype == np.float32
    assert np.isfinite(frames).all()
    worst, mean = TOLERANCE[dtype]
    diff = np.abs(frames - fp32_frames)
    assert diff.max() < worst and diff.mean() < mean, (diff.max(), diff.mean())
