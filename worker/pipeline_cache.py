"""Pipelines kept loaded per base model in the worker process (loading takes minutes on real weights)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from models.registry import ModelRegistry


class PipelineCache:
    """LRU by base model: keeps at most `capacity` pipelines (one fits a 16 GB GPU at fp16)."""

    def __init__(self, registry: ModelRegistry, device: str | None, capacity: int = 1) -> None:
        self.registry, self.device, self.capacity = registry, device, capacity
        self._loaded: OrderedDict[str, Any] = OrderedDict()

    def get(self, name: str):
        if name in self._loaded:
            self._loaded.move_to_end(name)
            return self._loaded[name]
        from models.loading import load_pipeline

        while len(self._loaded) >= self.capacity:
            self._loaded.popitem(last=False)
        pipe = load_pipeline(self.registry.get(name), device=self.device)
        self._loaded[name] = pipe
        return pipe

    def names(self) -> list[str]:
        return list(self._loaded)
