"""Optical flow -> the colour pictures the 360-Adapter was trained on (FACTS.md "Flow condition encoding").

The Middlebury colour wheel after the authors' magnitude companding, then inverted and with R and B swapped
(their OpenCV writer treated an RGB picture as BGR): the decoded video holds exactly this. Zero flow is black.
"""

from __future__ import annotations

import numpy as np

MAX_FLOW = 25.0
ALPHA = 0.1
# Middlebury wheel segments: red-yellow, yellow-green, green-cyan, cyan-blue, blue-magenta, magenta-red
WHEEL_SEGMENTS = (15, 6, 4, 11, 13, 6)


def colour_wheel() -> np.ndarray:
    """(55, 3) float RGB in [0, 255]: each segment ramps one channel up or down between the primaries."""
    rows = []
    # (channel held at 255, channel that ramps, ramp direction) per segment
    plan = ((0, 1, +1), (1, 0, -1), (1, 2, +1), (2, 1, -1), (2, 0, +1), (0, 2, -1))
    for length, (held, ramped, direction) in zip(WHEEL_SEGMENTS, plan, strict=True):
        segment = np.zeros((length, 3))
        segment[:, held] = 255
        ramp = np.floor(255 * np.arange(length) / length)
        segment[:, ramped] = ramp if direction > 0 else 255 - ramp
        rows.append(segment)
    return np.concatenate(rows)


def compand(flow: np.ndarray) -> np.ndarray:
    """u' = (|f| / 25) ** 0.1 * u / 25: small motions get visible colour, large ones saturate."""
    magnitude = np.linalg.norm(flow, axis=-1, keepdims=True)
    return np.power(magnitude / MAX_FLOW, ALPHA) * flow / MAX_FLOW


def encode_flow(flow: np.ndarray) -> np.ndarray:
    """(..., H, W, 2) flow in pixels (u right, v down) -> (..., H, W, 3) uint8 condition frames."""
    flow = compand(np.asarray(flow, dtype=np.float64))
    u, v = flow[..., 0], flow[..., 1]
    wheel = colour_wheel()
    n = len(wheel)
    radius = np.sqrt(u**2 + v**2)
    position = (np.arctan2(-v, -u) / np.pi + 1) / 2 * (n - 1)
    k0 = np.floor(position).astype(int)
    k1 = (k0 + 1) % n
    frac = (position - k0)[..., None]
    colour = ((1 - frac) * wheel[k0] + frac * wheel[k1]) / 255
    inside = (radius <= 1)[..., None]
    colour = np.where(inside, 1 - radius[..., None] * (1 - colour), colour * 0.75)
    picture = np.floor(255 * colour).astype(np.uint8)
    return (255 - picture)[..., ::-1].copy()
