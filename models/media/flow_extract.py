"""Optical flow from a panoramic clip (motion transfer): OpenCV DIS by default (CPU, no weights), Farneback,
or RAFT (models/raft.py) from local torchvision weights, on the GPU when there is one.

Every backend sees the panorama padded on both sides with the columns from the other side, so motion across
the left/right seam is continuous instead of an image border.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np

from models.media.errors import FlowInputError

BACKENDS = ("dis", "farneback", "raft")


@dataclass(frozen=True)
class FlowBackend:
    """How flow is measured. RAFT needs `raft_weights` (torchvision's raft_large_C_T_SKHT_V2-ff5fadd5.pth or
    raft_small_C_T_V2-01064c6d.pth, a local file); `device` is for RAFT only (default: CUDA when present)."""

    name: str = "dis"
    raft_weights: Path | None = None
    device: str | None = None

    def __post_init__(self) -> None:
        if self.name not in BACKENDS:
            raise FlowInputError(f"unknown flow backend {self.name!r}; use one of {', '.join(BACKENDS)}")
        if self.name == "raft" and self.raft_weights is None:
            raise FlowInputError(
                "the raft flow backend needs local weights: give the path of torchvision's "
                "raft_large_C_T_SKHT_V2-ff5fadd5.pth (or raft_small), or use the dis backend"
            )

    def raft(self):
        """The RAFT network, loaded once per process and device (torch is imported only here: the API process
        decodes uploads with the OpenCV backends and never imports it)."""
        from models.devices import select_device
        from models.raft import load_raft

        return load_raft(str(self.raft_weights), str(select_device(self.device)))


def _farneback(a: np.ndarray, b: np.ndarray, _: None) -> np.ndarray:
    return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 4, 21, 3, 5, 1.1, 0)


def _opencv_flow(frames: np.ndarray, name: str, progress: Callable[[int, int], None] | None) -> np.ndarray:
    calc = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc if name == "dis" else _farneback
    pad = frames.shape[2] // 8  # enough for motions up to W/8 per frame across the seam
    grey = [np.pad(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), ((0, 0), (pad, pad)), mode="wrap") for f in frames]
    flows = []
    for i, (a, b) in enumerate(pairwise(grey)):
        flows.append(calc(a, b, None)[:, pad:-pad])
        if progress is not None:
            progress(i + 1, len(grey) - 1)
    return np.stack(flows).astype(np.float32)


def extract_flow(
    frames: np.ndarray,
    backend: FlowBackend | str = "dis",
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB panoramas -> (N - 1, H, W, 2) float32 flow in pixels (u right, v down)."""
    backend = FlowBackend(backend) if isinstance(backend, str) else backend
    frames = np.ascontiguousarray(frames)
    if frames.ndim != 4 or len(frames) < 2:
        raise FlowInputError(f"need at least 2 RGB frames to measure motion, got shape {frames.shape}")
    if backend.name != "raft":
        return _opencv_flow(frames, backend.name, progress)
    from models.raft import raft_flow

    return raft_flow(backend.raft(), frames, progress=progress)
