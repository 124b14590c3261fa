"""Motion-compensated frame interpolation to 24/30 fps, continuous across the panorama's seam (issue 16)."""

import numpy as np
import pytest

from models.media.interpolate import INTERPOLATION_RATES, between, check_rate, interpolate_frames, output_times
from tests.media.test_flow_and_geometry import seamless_panorama


def test_output_times_keep_the_duration_and_the_loop():
    assert output_times(16, 8, 24, loop=False).tolist() == pytest.approx([i / 3 for i in range(46)])
    assert len(output_times(16, 8, 30, loop=False)) == 57  # 15 s / 8 * 30 + the first frame
    looped = output_times(16, 8, 24, loop=True)
    assert len(looped) == 48 and looped[-1] == pytest.approx(15 + 2 / 3)  # back to frame 0 is the next loop


def test_rates_are_checked():
    assert INTERPOLATION_RATES == (24, 30)
    check_rate(None, 8)
    check_rate(30, 8)
    with pytest.raises(ValueError, match="interpolate_to must be 24 or 30"):
        check_rate(25, 8)
    with pytest.raises(ValueError, match="must be above fps"):
        check_rate(24, 24)


def test_in_between_frame_follows_the_motion_across_the_seam():
    """A panorama turning 6 px a frame: the middle frame is the panorama turned 3 px, also at the seam, where a
    pixel that leaves the right edge enters on the left; a cross-fade would be a double image."""
    base = seamless_panorama(64, 128)
    a, b = base, np.roll(base, 6, axis=1)
    middle = between(a, b, [0.5])[0].astype(np.float32)
    truth = np.roll(base, 3, axis=1).astype(np.float32)
    inner = np.s_[8:-8]  # the poles' rows have no texture to measure motion on
    error = np.abs(middle[inner] - truth[inner]).mean(axis=(0, 2))
    fade = np.abs((a.astype(np.float32) + b) / 2 - truth)[inner].mean()
    assert error.mean() < 1.0 < fade  # grey levels: within one of the truth; a cross-fade is far off
    assert error[np.r_[0:4, 124:128]].mean() < 1.0  # at the seam too


def test_stream_of_chunks_becomes_the_new_rate():
    base = seamless_panorama(32, 64)
    frames = np.stack([np.roll(base, 2 * t, axis=1) for t in range(6)])
    chunks = [frames[:4], frames[4:]]
    out = np.concatenate(list(interpolate_frames(chunks, 6, 8, 24, loop=False)))
    assert out.shape == (16, 32, 64, 3) and out.dtype == np.uint8
    assert np.array_equal(out[::3], frames)  # the generated frames stay, untouched
    looped = np.concatenate(list(interpolate_frames(chunks, 6, 8, 24, loop=True)))
    assert len(looped) == 18 and np.array_equal(looped[::3], frames)  # 2 frames from the last back to the first
