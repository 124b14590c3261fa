"""Pipelines kept loaded per base model in the worker process (loading takes minutes on real weights)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.registry import ModelRegistry, ModelSpec

if TYPE_CHECKING:  # torch stays out of processes that only read settings
    from models.vae_tiling import VaeTiling
    from worker.settings import Settings


@dataclass(frozen=True)
class PipelineOptions:
    """How every pipeline of a worker runs, from its settings (see `worker/settings.py` for each)."""

    decode_chunk_size: int | None = None  # None: the pipeline's measured default for its device
    cpu_offload: bool = False
    vae_tiling: VaeTiling | None = None
    compile: str = "off"
    compile_cache_dir: Path | None = None  # where torch.compile's caches persist (None: torch's default)

    @classmethod
    def from_settings(cls, settings: Settings) -> PipelineOptions:
        from models.vae_tiling import VaeTiling

        tiling = None if settings.vae_tile is None else VaeTiling(settings.vae_tile, settings.vae_tile_overlap)
        return cls(
            settings.decode_chunk_size, settings.cpu_offload, tiling, settings.compile, settings.compile_cache_dir
        )


def load_with_options(spec: ModelSpec, device: str | None, options: PipelineOptions):
    """Load a pipeline for `device` and set it up as `options` say."""
    from models.devices import default_dtype, select_device
    from models.loading import load_pipeline

    if options.cpu_offload:
        # straight into CPU memory in the target's dtype (not onto the GPU and back): the offload hooks move
        # each model to the target for its stage
        target = select_device(device)
        pipe = load_pipeline(spec, device="cpu", dtype=default_dtype(target))
        pipe.enable_model_cpu_offload(target)
    else:
        pipe = load_pipeline(spec, device=device)
    pipe.decode_chunk_size = options.decode_chunk_size
    pipe.vae_tiling = options.vae_tiling
    if options.compile != "off":
        pipe.enable_compile(backend=options.compile, cache_dir=options.compile_cache_dir)
    return pipe


def weight_bytes(pipe: Any) -> int:
    """Bytes of every parameter and buffer of the pipeline's torch modules (what a cached model holds)."""
    import torch

    total = 0
    for component in vars(pipe).values():
        if isinstance(component, torch.nn.Module):
            tensors = [*component.parameters(), *component.buffers()]
            total += sum(t.numel() * t.element_size() for t in tensors)
    return total


class PipelineCache:
    """LRU by base model within a memory budget: loading a model evicts the least recently used ones until the
    new one fits. A budget of 0 keeps one model (an SD-1.5 360DVD pipeline is ~2.6 GB at fp16)."""

    def __init__(
        self,
        registry: ModelRegistry,
        device: str | None,
        budget_gb: float = 0,
        options: PipelineOptions = PipelineOptions(),
    ) -> None:
        self.registry, self.device, self.budget = registry, device, int(budget_gb * 2**30)
        self.options = options
        self._loaded: OrderedDict[str, tuple[Any, int]] = OrderedDict()

    def get(self, name: str):
        if name in self._loaded:
            self._loaded.move_to_end(name)
            return self._loaded[name][0]
        spec = self.registry.get(name)
        # make room before loading (two models must never be in memory beyond the budget), guessing the new
        # one is as large as the largest loaded; then trim again with its measured size
        self._evict_for(max((size for _, size in self._loaded.values()), default=0))
        pipe = load_with_options(spec, self.device, self.options)
        size = weight_bytes(pipe)
        self._evict_for(size)
        self._loaded[name] = (pipe, size)
        return pipe

    def _evict_for(self, incoming: int) -> None:
        while self._loaded and (not self.budget or self.used_bytes() + incoming > self.budget):
            self._loaded.popitem(last=False)

    def used_bytes(self) -> int:
        return sum(size for _, size in self._loaded.values())

    def names(self) -> list[str]:
        return list(self._loaded)
