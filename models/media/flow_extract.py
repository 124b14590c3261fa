"""Optical flow from a panoramic clip (motion transfer), CPU default with no weights: OpenCV DIS.

The panorama is padded on both sides with the columns from the other side before the flow is computed, so
motion across the left/right seam is continuous instead of an image border.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise

import cv2
import numpy as np

from models.media.errors import FlowInputError

BACKENDS = ("dis", "farneback")


def _wrap_pad(frame: np.ndarray, pad: int) -> np.ndarray:
    return np.concatenate([frame[:, -pad:], frame, frame[:, :pad]], axis=1)


def _flow_between(backend: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    if backend == "dis":
        return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc
    if backend == "farneback":
        return lambda a, b, _: cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 4, 21, 3, 5, 1.1, 0)
    raise FlowInputError(f"unknown flow backend {backend!r}; use one of {', '.join(BACKENDS)}")


def extract_flow(
    frames: np.ndarray, backend: str = "dis", progress: Callable[[int, int], None] | None = None
) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB panoramas -> (N - 1, H, W, 2) float32 flow in pixels (u right, v down)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or len(frames) < 2:
        raise FlowInputError(f"need at least 2 RGB frames to measure motion, got shape {frames.shape}")
    pad = frames.shape[2] // 8  # enough for motions up to W/8 per frame across the seam
    calc = _flow_between(backend)
    grey = [cv2.cvtColor(_wrap_pad(f, pad), cv2.COLOR_RGB2GRAY) for f in frames]
    flows = []
    for i, (a, b) in enumerate(pairwise(grey)):
        flows.append(calc(a, b, None)[:, pad:-pad])
        if progress is not None:
            progress(i + 1, len(grey) - 1)
    return np.stack(flows).astype(np.float32)
