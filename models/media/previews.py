"""Still pictures that go with each video: a poster (the middle frame, flat ERP) and a perspective preview
(four 90-degree views around the horizon), so a result can be judged without a 360° player."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from models.media.erp import perspective_from_erp
from models.media.video_writer import to_uint8

PREVIEW_YAWS = (0, 90, 180, 270)


def _save_jpeg(picture: np.ndarray, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture).save(path, format="JPEG", quality=90)
    return path


def write_poster(frames: np.ndarray, path: str | Path) -> Path:
    frames = to_uint8(np.asarray(frames))
    return _save_jpeg(frames[len(frames) // 2], path)


def write_preview(frames: np.ndarray, path: str | Path, size: int | None = None) -> Path:
    """Four 90-degree perspective views (yaw 0, 90, 180, 270) of the middle frame, side by side."""
    frame = to_uint8(np.asarray(frames))[len(frames) // 2]
    size = size or frame.shape[0] // 2
    views = [perspective_from_erp(frame, yaw, 0, 90, size, size) for yaw in PREVIEW_YAWS]
    return _save_jpeg(np.concatenate(views, axis=1), path)
