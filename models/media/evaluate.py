"""Panorama video scores: how seamless the left/right edge is, and how steady the frames are."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.media.errors import VideoFileError
from models.media.flow_video import decode_rgb


def evaluate_frames(frames: np.ndarray) -> dict[str, float]:
    """(F, H, W, 3) pixels in [0, 1] -> end_continuity (PanoWan/PanFlow: mean |last column - first column|),
    seam_ratio (that over the mean difference of adjacent interior columns: about 1 when the seam looks like
    any other column boundary) and frame_consistency (mean |frame t+1 - frame t|)."""
    frames = np.asarray(frames, dtype=np.float32)
    end_continuity = float(np.abs(frames[:, :, -1] - frames[:, :, 0]).mean())
    interior = float(np.abs(np.diff(frames, axis=2)).mean())
    consistency = float(np.abs(np.diff(frames, axis=0)).mean()) if len(frames) > 1 else 0.0
    return {
        "end_continuity": end_continuity,
        "seam_ratio": end_continuity / interior if interior > 0 else 0.0,
        "frame_consistency": consistency,
    }


def evaluate_video(path: str | Path) -> dict[str, float | int]:
    frames = np.stack(decode_rgb(path)) if Path(path).is_file() else None
    if frames is None or len(frames) == 0:
        raise VideoFileError(f"{path}: no video frames to evaluate")
    scores = evaluate_frames(frames.astype(np.float32) / 255.0)
    return {**scores, "frames": len(frames), "height": int(frames.shape[1]), "width": int(frames.shape[2])}
