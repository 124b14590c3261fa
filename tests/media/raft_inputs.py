"""Deterministic RAFT weights and image pairs, shared by the tests and the script that records torchvision's
outputs for them (scripts/record_raft_reference.py). The values come from numpy, so both torch builds see the
same numbers."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).parent / "fixtures"


def deterministic_weights(shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Random but well-scaled values for every key, seeded by the key's name (independent of key order)."""
    state = {}
    for key, shape in shapes.items():
        rng = np.random.default_rng(zlib.crc32(key.encode()))
        if key.endswith("num_batches_tracked"):
            state[key] = np.zeros(shape, np.int64)
            continue
        values = rng.standard_normal(shape)
        if key.endswith("running_var"):
            values = 1 + 0.1 * np.abs(values)
        elif key.endswith(("running_mean", "bias")):
            values = 0.05 * values
        elif len(shape) == 1:  # BatchNorm scale
            values = 1 + 0.1 * values
        else:  # conv kernels: unit-variance activations through the stack
            values = values / np.sqrt(np.prod(shape[1:]))
        state[key] = values.astype(np.float32)
    return state


def panorama_pair(h: int = 128, w: int = 256, shift: int = 5, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A smooth panorama texture and the same turned by `shift` columns (uint8 RGB, H x W x 3)."""
    rng = np.random.default_rng(seed)
    lon = np.linspace(0, 2 * np.pi, w, endpoint=False)[None, :, None, None]
    lat = np.linspace(-1.4, 1.4, h)[:, None, None, None]
    k = rng.integers(1, 7, size=(1, 1, 3, 5))
    phase = rng.uniform(0, 2 * np.pi, size=(1, 1, 3, 5))
    image = 0.5 + 0.1 * np.sin(k * lon + phase + 3 * np.sin(2 * lat * k)).sum(-1)
    first = (np.clip(image, 0, 1) * 255).astype(np.uint8)
    return first, np.roll(first, shift, axis=1)


def raft_layout(size: str) -> dict[str, tuple[int, ...]]:
    """torchvision's raft_large or raft_small keys and shapes, as recorded in fixtures/raft_keys.json."""
    return {k: tuple(s) for k, s in json.loads((FIXTURES / "raft_keys.json").read_text())[size].items()}


def raft_state(size: str) -> dict:
    """torchvision's raft_large or raft_small state dict (recorded key layout) with deterministic values."""
    import torch

    return {k: torch.from_numpy(v) for k, v in deterministic_weights(raft_layout(size)).items()}


def save_raft_weights(path: Path, size: str = "small") -> Path:
    """A RAFT weights file as torchvision publishes them (a bare state dict in a .pth)."""
    import torch

    torch.save(raft_state(size), path)
    return path
