"""Poster and perspective preview pictures."""

from __future__ import annotations

import numpy as np
from PIL import Image

from models.media.erp import perspective_from_erp
from models.media.previews import write_poster, write_preview
from tests.media.test_flow_and_geometry import seamless_panorama


def test_poster_is_the_middle_frame(tmp_path) -> None:
    frames = np.stack([np.full((32, 64, 3), 40 * i, np.uint8) for i in range(5)])
    poster = Image.open(write_poster(frames, tmp_path / "poster.jpg"))
    assert poster.format == "JPEG" and poster.size == (64, 32)
    assert abs(np.asarray(poster).mean() - 80) < 2


def test_preview_is_four_horizon_views(tmp_path) -> None:
    pano = seamless_panorama(128, 256)
    preview = np.asarray(Image.open(write_preview(np.stack([pano] * 3), tmp_path / "preview.jpg")), np.float32)
    assert preview.shape == (64, 256, 3)
    for i, yaw in enumerate((0, 90, 180, 270)):
        expected = perspective_from_erp(pano, yaw, 0, 90, 64, 64).astype(np.float32)
        assert np.abs(preview[:, 64 * i : 64 * (i + 1)] - expected).mean() < 4  # JPEG-close to that view
    assert np.abs(preview[:, :64] - preview[:, 128:192]).mean() > 10  # front and back differ
