"""Motion-compensated frame interpolation for 360° videos (8 fps -> 24 or 30 fps for players and YouTube).

Frames in between are warped from both neighbours along the project's seam-continuous optical flow
(`flow_extract`, which wrap-pads the panorama) and blended. The warp wraps horizontally (a pixel that leaves the
right edge enters on the left, `cv2.BORDER_WRAP`) and clamps vertically (the poles do not touch). Torch-free:
OpenCV DIS flow, streamed chunk by chunk so a long video is never held whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import chain

import cv2
import numpy as np

from models.media.flow_extract import extract_flow
from models.media.video_writer import to_uint8

INTERPOLATION_RATES = (24, 30)  # the frame rates a request may ask for (`interpolate_to`)
EPS = 1e-6  # output times are multiples of fps / rate: a float's rounding, not a frame


def offered_rate(value: object) -> object:
    """`value` when it is a rate on offer (a number, or its digits as sent in a form), else ValueError saying which
    rates are."""
    if value in INTERPOLATION_RATES or (isinstance(value, str) and value.strip() in map(str, INTERPOLATION_RATES)):
        return value
    rates = " or ".join(map(str, INTERPOLATION_RATES))
    raise ValueError(f"interpolate_to must be {rates} (frames per second), got {value}")


def check_rate(interpolate_to: int | None, fps: int) -> None:
    """Refuse a rate that is not offered or not above the playback rate, saying what is."""
    if interpolate_to is None:
        return
    offered_rate(interpolate_to)
    if interpolate_to <= fps:
        raise ValueError(f"interpolate_to ({interpolate_to}) must be above fps ({fps}): nothing to interpolate")


def output_times(num_frames: int, fps: int, rate: int, loop: bool) -> np.ndarray:
    """Source-frame positions of the output frames: every 1/rate s from frame 0 up to the last frame, or, for a
    loop, up to (not including) the return to frame 0, so the interpolated video loops at the new rate too."""
    span = num_frames if loop else num_frames - 1
    count = int(np.floor(span * rate / fps + 1e-9)) + (0 if loop else 1)
    return np.arange(max(count, 1)) * fps / rate


def _warp(frame: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Sample `frame` at x + flow: horizontally wrapped, vertically clamped."""
    h, w = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    map_x = np.mod(grid_x + flow[..., 0], w).astype(np.float32)
    map_y = np.clip(grid_y + flow[..., 1], 0, h - 1).astype(np.float32)
    return cv2.remap(frame, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)


def between(a: np.ndarray, b: np.ndarray, times: Iterable[float]) -> list[np.ndarray]:
    """uint8 frames at fractions `times` (0 < t < 1) of the way from frame a to frame b.

    Flow at the in-between time is approximated from the two measured flows (Super SloMo's linear
    combination), each neighbour is warped along it and the two are blended by closeness."""
    forward, backward = extract_flow(np.stack([a, b])), extract_flow(np.stack([b, a]))
    forward, backward = forward[0], backward[0]
    frames = []
    for t in times:
        to_a = -(1 - t) * t * forward + t * t * backward
        to_b = (1 - t) * (1 - t) * forward - t * (1 - t) * backward
        mixed = (1 - t) * _warp(a, to_a).astype(np.float32) + t * _warp(b, to_b).astype(np.float32)
        frames.append(np.clip(mixed + 0.5, 0, 255).astype(np.uint8))
    return frames


def interpolate_frames(
    chunks: Iterable[np.ndarray], num_frames: int, fps: int, rate: int, loop: bool = False
) -> Iterator[np.ndarray]:
    """Stream (n, H, W, 3) chunks of a `num_frames` video at `fps` -> uint8 chunks at `rate` frames per second.
    For a loop, the frames after the last one are interpolated towards the first."""
    times = output_times(num_frames, fps, rate, loop)
    frames = (f for chunk in chunks for f in to_uint8(np.asarray(chunk)))
    first = previous = next(frames)
    index = 0
    for current in chain(frames, [first] if loop else []):
        yield from _span(previous, current, times[(times > index - EPS) & (times < index + 1 - EPS)] - index)
        previous, index = current, index + 1
    if not loop and abs(times[-1] - index) < EPS:
        yield previous[None]


def _span(a: np.ndarray, b: np.ndarray, local: np.ndarray) -> Iterator[np.ndarray]:
    """The output frames at fractions `local` (sorted, in [0, 1)) of the way from frame a to frame b."""
    if len(local) and local[0] < EPS:
        yield a[None]
        local = local[1:]
    if len(local):
        yield np.stack(between(a, b, local))
