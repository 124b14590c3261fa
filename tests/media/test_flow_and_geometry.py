"""Flow colour encoding (FACTS.md), seam-continuous flow extraction, and ERP geometry."""

from __future__ import annotations

import numpy as np
import pytest

from models.media.erp import latitude_weights, perspective_from_erp
from models.media.errors import FlowInputError
from models.media.flow_encoding import colour_wheel, encode_flow
from models.media.flow_extract import extract_flow


def seamless_panorama(h: int = 64, w: int = 128, seed: int = 0) -> np.ndarray:
    """Smooth texture, periodic in longitude, uint8 RGB."""
    rng = np.random.default_rng(seed)
    lon = np.linspace(0, 2 * np.pi, w, endpoint=False)[None, :, None]
    lat = np.linspace(-1.4, 1.4, h)[:, None, None]
    k = rng.integers(1, 6, size=(1, 1, 3, 4))
    phase = rng.uniform(0, 2 * np.pi, size=(1, 1, 3, 4))
    image = 0.5 + 0.12 * np.sin(k * lon[..., None] + phase + 3 * np.sin(2 * lat[..., None] * k)).sum(-1)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def test_wheel_has_the_middlebury_55_colours() -> None:
    wheel = colour_wheel()
    assert wheel.shape == (55, 3)
    np.testing.assert_array_equal(wheel[0], [255, 0, 0])  # red
    np.testing.assert_array_equal(wheel[15], [255, 255, 0])  # yellow after the 15 red-yellow steps
    np.testing.assert_array_equal(wheel[21], [0, 255, 0])  # green


def test_zero_flow_is_black_and_colours_are_inverted_with_r_b_swapped() -> None:
    assert encode_flow(np.zeros((2, 4, 8, 2))).max() == 0
    right = encode_flow(np.array([[[25.0, 0.0]]]))[0, 0]
    # |f| = 25 companded to radius 1: wheel colour 0 (red, 255 0 0) -> inverted (0, 255, 255) -> R/B swapped
    np.testing.assert_array_equal(right, [255, 255, 0])
    down = encode_flow(np.array([[[0.0, 25.0]]]))[0, 0]
    # angle -pi/2 -> wheel position 13.5, between greens floor(255 * 13 / 15) and floor(255 * 14 / 15): G = 229
    np.testing.assert_array_equal(down, [255, 255 - 229, 0])


def test_direction_and_magnitude_order_survive_encoding() -> None:
    angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    unit = np.stack([np.cos(angles), np.sin(angles)], -1)
    colours = encode_flow(unit[None] * 10.0)[0].astype(int)
    assert len({tuple(c) for c in colours}) == 12  # every direction has its own colour
    magnitudes = np.array([0.5, 2.0, 8.0, 20.0])
    ramp = encode_flow((magnitudes[:, None] * unit[3])[None])[0].astype(float)
    distance_from_black = np.linalg.norm(ramp, axis=-1)
    assert np.all(np.diff(distance_from_black) > 0)  # stronger motion, stronger colour


@pytest.mark.parametrize("backend", ["dis", "farneback"])
def test_flow_of_a_turning_panorama_is_uniform_and_horizontal_across_the_seam(backend) -> None:
    base = seamless_panorama(128, 256)
    clip = np.stack([np.roll(base, 3 * t, axis=1) for t in range(4)])
    flow = extract_flow(clip, backend=backend)
    assert flow.shape == (3, 128, 256, 2)
    band = flow[:, 32:96]  # away from the poles' stretched texture
    for columns in (band[:, :, :6], band[:, :, -6:], band[:, :, 100:156]):  # both seam edges and the middle
        assert np.median(columns[..., 0]) == pytest.approx(3.0, abs=0.3)
        assert abs(np.median(columns[..., 1])) < 0.3


def test_extraction_needs_two_frames() -> None:
    with pytest.raises(FlowInputError, match="at least 2"):
        extract_flow(np.zeros((1, 8, 16, 3), np.uint8))
    with pytest.raises(FlowInputError, match="unknown flow backend"):
        extract_flow(np.zeros((2, 8, 16, 3), np.uint8), backend="magic")


def test_perspective_of_a_yaw_rolled_panorama_equals_the_shifted_view() -> None:
    pano = seamless_panorama(128, 256)
    shifted = np.roll(pano, -32, axis=1)  # content at column c moves to c - 32: a 45 degree turn
    view = perspective_from_erp(shifted, 10, 5, 90, 48, 64)
    np.testing.assert_array_equal(view, perspective_from_erp(pano, 55, 5, 90, 48, 64))
    # across the seam too: yaw 180 looks at the columns on both sides of the ERP edge
    np.testing.assert_array_equal(
        perspective_from_erp(shifted, 135, 0, 90, 48, 64), perspective_from_erp(pano, 180, 0, 90, 48, 64)
    )


def test_perspective_is_batched_over_frames() -> None:
    frames = np.stack([seamless_panorama(seed=s) for s in range(3)])
    views = perspective_from_erp(frames, 30, -10, 90, 32, 32)
    assert views.shape == (3, 32, 32, 3)
    np.testing.assert_array_equal(views[2], perspective_from_erp(frames[2], 30, -10, 90, 32, 32))


def test_centre_view_samples_the_centre_column() -> None:
    pano = np.zeros((64, 128, 3), np.float32)
    pano[:, 63:65] = 1.0  # the two columns around longitude 0
    view = perspective_from_erp(pano, 0, 0, 60, 33, 33)
    assert view[16, 16, 0] == pytest.approx(1.0) and view[16, 0, 0] == 0.0


def test_latitude_weights_follow_the_formula() -> None:
    h = 64
    i = np.arange(h)
    np.testing.assert_allclose(latitude_weights(h), np.abs(np.cos((2 * i - h + 1) / (2 * h) * np.pi)))
    w = latitude_weights(h)
    assert w[h // 2] > 0.99 and w[0] < 0.03 and np.allclose(w, w[::-1])
