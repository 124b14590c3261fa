"""The decoders' bounds on valid and borderline files: raw flow is read field by field from checked headers (only
the fields asked for, so bad data elsewhere is never read), compressed archives of real flow pass, and the video
reader checks every frame (the decoder's pixel limit, one size throughout, a caller's check) while resizing each
frame as it is decoded."""

from __future__ import annotations

import numpy as np
import pytest

from models.media.errors import FlowInputError
from models.media.raw_flow import read_raw_flow, resize_flow
from models.media.video_reader import CorruptVideo, read_frames
from models.media.video_writer import write_video
from tests.hostile_files import join_videos


def _flow(frames: int, height: int = 16, width: int = 32) -> np.ndarray:
    return np.random.default_rng(0).normal(0, 2, (frames, height, width, 2)).astype(np.float32)


def test_only_the_chosen_fields_are_read(tmp_path) -> None:
    flow = _flow(40)
    flow[30:] = np.nan  # never read when the fields asked for come before
    np.save(tmp_path / "flow.npy", flow)
    np.savez_compressed(tmp_path / "flow.npz", flow=flow)
    for name in ("flow.npy", "flow.npz"):
        picked = read_raw_flow(tmp_path / name, lambda count: [0, 5, 5, 29])
        np.testing.assert_array_equal(picked, flow[[0, 5, 5, 29]])
        with pytest.raises(FlowInputError, match="NaN"):
            read_raw_flow(tmp_path / name, lambda count: [31])


def test_fields_are_resized_as_read_with_their_vectors(tmp_path) -> None:
    flow = _flow(3)
    np.save(tmp_path / "flow.npy", flow.astype(np.float64))  # any numeric dtype, read as float32
    resized = read_raw_flow(tmp_path / "flow.npy", None, (32, 64))
    np.testing.assert_allclose(resized, resize_flow(flow, 32, 64), rtol=1e-5, atol=1e-5)


def test_compressed_real_flow_and_small_constant_flow_pass(tmp_path) -> None:
    np.savez_compressed(tmp_path / "real.npz", flow=_flow(20, 64, 128))
    np.savez_compressed(tmp_path / "still.npz", flow=np.zeros((20, 64, 128, 2), np.float32))  # 1000:1, but small
    assert read_raw_flow(tmp_path / "real.npz").shape == (20, 64, 128, 2)
    assert not read_raw_flow(tmp_path / "still.npz").any()


def test_layouts_numpy_can_write_but_flow_cannot_use_are_refused(tmp_path) -> None:
    np.save(tmp_path / "fortran.npy", np.asfortranarray(_flow(4)))
    np.save(tmp_path / "complex.npy", _flow(4).astype(np.complex64))
    with pytest.raises(FlowInputError, match="Fortran order"):
        read_raw_flow(tmp_path / "fortran.npy")
    with pytest.raises(FlowInputError, match="must be numbers"):
        read_raw_flow(tmp_path / "complex.npy")
    with pytest.raises(FlowInputError, match="not field 9"):
        np.save(tmp_path / "flow.npy", _flow(4))
        read_raw_flow(tmp_path / "flow.npy", lambda count: [9])


def test_video_frames_are_resized_as_decoded_and_checked(tmp_path) -> None:
    frames = np.random.default_rng(1).random((6, 64, 128, 3), dtype=np.float32)
    path = write_video(frames, tmp_path / "clip.mp4", fps=8)
    full = read_frames(path)
    small = read_frames(path, [0, 3], (32, 64))
    assert full.shape == (6, 64, 128, 3) and small.shape == (2, 32, 64, 3)
    seen = []
    read_frames(path, [2], check=lambda i, w, h: seen.append((i, w, h)))
    assert seen == [(0, 128, 64), (1, 128, 64), (2, 128, 64)]  # every decoded frame, kept or not
    with pytest.raises(CorruptVideo):  # FFmpeg's own limit, before the picture is allocated
        read_frames(path, max_pixels=128 * 64 - 1)
    with pytest.raises(CorruptVideo, match="megapixels"):
        read_frames(path, max_decoded_pixels=3 * 128 * 64)


def test_a_stream_that_changes_size_is_refused_at_the_first_changed_frame(tmp_path) -> None:
    path = tmp_path / "grow.mkv"
    join_videos(path, [("128x64", 3, ("-c:v", "mjpeg")), ("256x128", 2, ("-c:v", "mjpeg"))])
    assert read_frames(path, [0, 2]).shape == (2, 64, 128, 3)  # the first part alone is fine
    with pytest.raises(CorruptVideo, match="frame 3 is 256 x 128 but the video starts at 128 x 64"):
        read_frames(path, [4])
