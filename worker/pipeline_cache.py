"""Generators (loaded pipelines) kept per base model in the worker process (loading takes minutes on real
weights)."""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from models.registry import ModelRegistry
from worker.predictor import Generator, PipelineOptions

if TYPE_CHECKING:
    from models.media.flow_extract import FlowBackend


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
        flow_backend: FlowBackend | None = None,
    ) -> None:
        self.registry, self.device, self.budget = registry, device, int(budget_gb * 2**30)
        self.options, self.flow_backend = options, flow_backend
        self._loaded: OrderedDict[str, tuple[Generator, int]] = OrderedDict()

    def get(self, name: str) -> Generator:
        if name in self._loaded:
            self._loaded.move_to_end(name)
            return self._loaded[name][0]
        spec = self.registry.get(name)
        # make room before loading (two models must never be in memory beyond the budget), guessing the new
        # one is as large as the largest loaded; then trim again with its measured size
        self._evict_for(max((size for _, size in self._loaded.values()), default=0))
        generator = Generator().setup(spec, self.device, self.options, self.flow_backend)
        size = weight_bytes(generator.pipe)
        self._evict_for(size)
        self._loaded[name] = (generator, size)
        return generator

    def _evict_for(self, incoming: int) -> None:
        while self._loaded and (not self.budget or self.used_bytes() + incoming > self.budget):
            self._loaded.popitem(last=False)

    def used_bytes(self) -> int:
        return sum(size for _, size in self._loaded.values())

    def names(self) -> list[str]:
        return list(self._loaded)
