"""Panorama video scores: how seamless the left/right edge is, how steady the frames are, whether the video
loops without a jump and whether its context windows show. Torch-free."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.media.errors import VideoFileError
from models.media.flow_video import decode_rgb

CONTEXT_LENGTH = 16  # mm_sd_v14's context windows (models.context_windows), where window seams would be


def evaluate_frames(frames: np.ndarray, window: int = CONTEXT_LENGTH) -> dict[str, float | None]:
    """(F, H, W, 3) pixels in [0, 1] -> end_continuity (PanoWan/PanFlow: mean |last column - first column|),
    seam_ratio (that over the mean difference of adjacent interior columns: about 1 when the seam looks like
    any other column boundary), frame_consistency (mean |frame t+1 - frame t|), loop_closure (mean |first frame
    - last frame| over the median step between consecutive frames: about 1 when the video loops without a
    jump) and window_seam_ratio (mean step into frames at multiples of `window`, where context windows meet,
    over the mean step elsewhere: about 1 when windows do not show; None for videos of at most one window)."""
    frames = np.asarray(frames, dtype=np.float32)
    end_continuity = float(np.abs(frames[:, :, -1] - frames[:, :, 0]).mean())
    interior = float(np.abs(np.diff(frames, axis=2)).mean())
    steps = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3)) if len(frames) > 1 else np.zeros(0)
    boundary = np.zeros(len(steps), bool)
    boundary[window - 1 :: window] = True  # step i goes from frame i to frame i + 1
    median = float(np.median(steps)) if len(steps) else 0.0
    closure = float(np.abs(frames[-1] - frames[0]).mean())
    return {
        "end_continuity": end_continuity,
        "seam_ratio": end_continuity / interior if interior > 0 else 0.0,
        "frame_consistency": float(steps.mean()) if len(steps) else 0.0,
        "loop_closure": closure / median if median > 0 else 0.0,
        "window_seam_ratio": _ratio(steps[boundary], steps[~boundary]),
    }


def _ratio(part: np.ndarray, rest: np.ndarray) -> float | None:
    return float(part.mean() / rest.mean()) if len(part) and len(rest) and rest.mean() > 0 else None


def evaluate_video(path: str | Path, window: int = CONTEXT_LENGTH) -> dict[str, float | int | None]:
    frames = np.stack(decode_rgb(path)) if Path(path).is_file() else None
    if frames is None or len(frames) == 0:
        raise VideoFileError(f"{path}: no video frames to evaluate")
    scores = evaluate_frames(frames.astype(np.float32) / 255.0, window)
    return {**scores, "frames": len(frames), "height": int(frames.shape[1]), "width": int(frames.shape[2])}
