"""Worker settings for low VRAM and speed reach every pipeline the worker loads: CPU offload, VAE tiling,
torch.compile and the decode chunk size, set in one place (PipelineOptions) after loading."""

import os
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from core.settings import Settings
from models.registry import load_registry
from models.tiny import build_tiny_pipeline
from models.vae_tiling import VaeTiling
from worker.pipeline_cache import PipelineCache
from worker.predictor import PipelineOptions

JOB = {"num_frames": 2, "height": 64, "width": 128, "num_inference_steps": 2, "seed": 4}


def cached_tiny(options: PipelineOptions):
    return PipelineCache(load_registry(None), "cpu", options=options).get("tiny").pipe


def offload_hooks(pipe) -> list[bool]:
    return [hasattr(m, "_hf_hook") for m in (pipe.text_encoder, pipe.adapter, pipe.unet, pipe.vae)]


def test_settings_become_options(monkeypatch):
    for name, value in {
        "CPU_OFFLOAD": "1",
        "VAE_TILE": "32",
        "VAE_TILE_OVERLAP": "8",
        "DECODE_CHUNK_SIZE": "2",
    }.items():
        monkeypatch.setenv(f"DVD360_{name}", value)
    assert PipelineOptions.from_settings(Settings()) == PipelineOptions(2, True, VaeTiling(32, 8), "off")
    monkeypatch.setenv("DVD360_COMPILE", "inductor")
    monkeypatch.setenv("DVD360_COMPILE_CACHE_DIR", "/compile-cache")
    monkeypatch.setenv("DVD360_CPU_OFFLOAD", "0")
    monkeypatch.delenv("DVD360_VAE_TILE")
    expected = PipelineOptions(2, False, None, "inductor", Path("/compile-cache"))
    assert PipelineOptions.from_settings(Settings()) == expected


def test_default_overlap_is_the_tilings_default():
    assert Settings.model_fields["vae_tile_overlap"].default == VaeTiling().overlap


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"VAE_TILE": "16", "VAE_TILE_OVERLAP": "16"},
            "DVD360_VAE_TILE_OVERLAP .16. must be smaller than DVD360_VAE_TILE",
        ),
        ({"VAE_TILE": "8"}, "DVD360_VAE_TILE_OVERLAP .16. must be smaller"),  # the default overlap is 16
        ({"VAE_TILE": "0"}, "vae_tile"),
        ({"VAE_TILE_OVERLAP": "0"}, "vae_tile_overlap"),
        ({"COMPILE": "fast"}, "compile"),
    ],
)
def test_invalid_settings_name_the_variable(monkeypatch, env, message):
    for name, value in env.items():
        monkeypatch.setenv(f"DVD360_{name}", value)
    with pytest.raises(ValidationError, match=message):
        Settings()


def test_default_options_leave_the_pipeline_as_loaded():
    pipe = cached_tiny(PipelineOptions())
    assert offload_hooks(pipe) == [False] * 4
    assert pipe.vae_tiling is None and pipe.decode_chunk_size is None
    assert pipe.unet._compiled_call_impl is None


def test_offload_tiling_and_chunks_are_applied_and_give_the_normal_video():
    normal = build_tiny_pipeline(seed=0)("a volcano", **JOB).frames
    tiling = VaeTiling(tile=16, overlap=4)  # 16 latent pixels cover the job's 8x16 latents: one exact tile
    pipe = cached_tiny(PipelineOptions(decode_chunk_size=1, cpu_offload=True, vae_tiling=tiling))
    assert offload_hooks(pipe) == [True] * 4  # the CPU stands in for the GPU: the hooks run all the same
    assert pipe.vae_tiling == tiling and pipe.decode_chunk_size == 1
    np.testing.assert_allclose(pipe("a volcano", **JOB).frames, normal, atol=1e-5)


def test_compile_wraps_the_unet_and_the_vae_decoder():
    # `nn.Module.compile` keeps the compiled call on the module; nothing is traced before the first job
    pipe = cached_tiny(PipelineOptions(compile="eager"))
    assert pipe.unet._compiled_call_impl is not None
    assert pipe.vae.decoder._compiled_call_impl is not None


def test_compile_cache_folder_reaches_torch(monkeypatch, tmp_path):
    """The folder becomes inductor's cache folder, with its FX graph and AOTAutograd caches on (what
    tests/models/test_compile_cache.py shows a fresh process reuses)."""
    import torch._functorch.config
    import torch._inductor.config
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    for name in ("TORCHINDUCTOR_CACHE_DIR", "TORCHINDUCTOR_FX_GRAPH_CACHE", "TORCHINDUCTOR_AUTOGRAD_CACHE"):
        monkeypatch.delenv(name, raising=False)  # restored after the test, like the configs below
    monkeypatch.setattr(torch._inductor.config, "fx_graph_cache", False)
    monkeypatch.setattr(torch._functorch.config, "enable_autograd_cache", False)
    pipe = cached_tiny(PipelineOptions(compile="eager", compile_cache_dir=tmp_path / "cache"))
    assert pipe.unet._compiled_call_impl is not None
    assert cache_dir() == str(tmp_path / "cache") and (tmp_path / "cache").is_dir()
    assert os.environ["TORCHINDUCTOR_FX_GRAPH_CACHE"] == os.environ["TORCHINDUCTOR_AUTOGRAD_CACHE"] == "1"
    assert torch._inductor.config.fx_graph_cache and torch._functorch.config.enable_autograd_cache
