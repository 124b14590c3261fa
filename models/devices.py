"""Where and how the model runs: device, dtype, attention kernels, optional compilation."""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import logging
import os
from pathlib import Path

import torch
from diffusers.models.attention_processor import AttnProcessor2_0

log = logging.getLogger(__name__)


def select_device(requested: str | torch.device | None = None) -> torch.device:
    """The requested device, else CUDA when present, else CPU."""
    if requested is not None:
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {requested!r} was requested but CUDA is not available on this machine")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    """fp16 on CUDA (as the published model ran), fp32 on CPU (fp16 convolutions are slow or missing there)."""
    return torch.float16 if device.type == "cuda" else torch.float32


# Frames the VAE decodes at once, per device type. CPU: measured on 2 cores, full-size VAE, 8 frames of
# 128x256: one frame at a time 14.6 s, four at a time 17.2 s (the elementwise ops outgrow the caches).
# CUDA: measured on one H100, fp16, 16 frames of 512x1024: all 16 at once 0.43 s (22.7 GiB peak), one at a time
# 0.79 s (1.8 GiB); smaller GPUs set DVD360_DECODE_CHUNK_SIZE or DVD360_VAE_TILE.
DECODE_CHUNK_SIZE = {"cpu": 1, "cuda": 16}


def default_decode_chunk_size(device: torch.device) -> int:
    return DECODE_CHUNK_SIZE.get(device.type, 1)


@functools.cache
def _malloc_trim():
    """glibc's `malloc_trim` from the C library already loaded in this process (no library search, which may
    run `ldconfig` or a compiler), or None where it has none (musl, macOS)."""
    return getattr(ctypes.CDLL(None), "malloc_trim", None)


def release_freed_host_memory() -> None:
    """Return the C heap's freed pages to the OS. The denoising loop frees hundreds of MB of activations that
    glibc keeps for reuse; the VAE decode then allocates other sizes on top. Trimming in between lowered the
    full-size CPU job's peak RSS by ~70 MB (6.71 -> 6.64 GB for 5.97 GB of weights) at no measurable cost."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on `device`, so a wall-clock time includes it (kernels run asynchronously)."""
    if device.type != "cpu":
        torch.accelerator.synchronize(device)


def configure_compile_cache(folder: str | Path) -> Path:
    """Keep torch.compile's on-disk caches in `folder`: inductor's cache folder (generated kernels, Triton's
    cache, autotuning results), its FX graph cache and AOTAutograd's cache, which key compiled graphs by their
    code, inputs and configuration. On a volume, a restarted worker's first job of a known shape loads its graphs
    instead of compiling them (dynamo still traces, in seconds). Both the environment (which inductor reads on
    every use, and its compile subprocesses inherit) and the already imported configs are set."""
    import torch._functorch.config
    import torch._inductor.config

    folder = Path(folder).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    os.environ["TORCHINDUCTOR_FX_GRAPH_CACHE"] = "1"
    os.environ["TORCHINDUCTOR_AUTOGRAD_CACHE"] = "1"
    torch._inductor.config.fx_graph_cache = True
    torch._functorch.config.enable_autograd_cache = True
    return folder


def xformers_available() -> bool:
    return importlib.util.find_spec("xformers") is not None


def configure_attention(unet: torch.nn.Module, device: torch.device) -> str:
    """xformers memory-efficient attention on CUDA when installed, else PyTorch SDPA. Returns the kernel name."""
    if device.type == "cuda" and xformers_available():
        try:
            unet.enable_xformers_memory_efficient_attention()
            return "xformers"
        except Exception as exc:  # a wheel built for another CUDA/torch imports but fails at first use
            log.warning("xformers is installed but unusable (%s); using PyTorch SDPA", exc)
    unet.set_attn_processor(AttnProcessor2_0())
    return "sdpa"
