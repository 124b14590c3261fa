"""Low-VRAM modes give the normal path's video: model CPU offload (each model moved in for its stage) and
one-frame VAE slices, both width-circular as usual."""

import numpy as np

from models.tiny import build_tiny_pipeline

JOB = {"num_frames": 2, "height": 64, "width": 128, "num_inference_steps": 2, "seed": 4}


def test_model_cpu_offload_and_one_frame_slices_equal_the_normal_path(tiny_pipe):
    normal = tiny_pipe("a volcano", **JOB).frames
    pipe = build_tiny_pipeline(seed=0)
    pipe.enable_model_cpu_offload("cpu")  # the CPU stands in for the GPU: the offload hooks run all the same
    pipe.decode_chunk_size = 1
    assert all(hasattr(m, "_hf_hook") for m in (pipe.text_encoder, pipe.adapter, pipe.unet, pipe.vae))
    # each stage evicts the one before it, and the text encoder the VAE of the call before
    evicts = {id(m._hf_hook.prev_module_hook.model) for m in (pipe.text_encoder, pipe.adapter, pipe.unet, pipe.vae)}
    assert evicts == {id(pipe.vae), id(pipe.text_encoder), id(pipe.adapter), id(pipe.unet)}
    assert pipe.text_encoder._hf_hook.prev_module_hook.model is pipe.vae
    np.testing.assert_allclose(pipe("a volcano", **JOB).frames, normal, atol=1e-5)
