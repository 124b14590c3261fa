"""The flow-video reader on the authors' example, and the MP4 writer checked with ffprobe."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from models.media.errors import FlowInputError
from models.media.flow_encoding import encode_flow
from models.media.flow_video import load_flow_condition, motion_length, read_flow_condition, sample_indices
from models.media.video_writer import write_video
from tests.tools import EXAMPLE_FLOW as EXAMPLE
from tests.tools import video_stream


def test_published_sampling_indices() -> None:
    assert sample_indices(100, 16).tolist() == [*range(15), 16]
    assert sample_indices(1, 8).tolist() == [0] * 8  # a single field is constant motion (shorter: refused)


def test_authors_example_decodes_to_the_pipeline_tensor() -> None:
    condition = read_flow_condition(EXAMPLE, num_frames=16, height=512, width=1024)
    assert condition.shape == (16, 3, 512, 1024) and condition.dtype == np.float32
    assert condition.min() >= -1.0 and condition.max() <= 1.0
    with av.open(str(EXAMPLE)) as container:
        frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(17), container.decode(video=0), strict=False)]
    # index 15 of the condition is video frame 16 (the published linspace rounding), channels in RGB order
    np.testing.assert_allclose((condition[15].transpose(1, 2, 0) + 1) * 127.5, frames[16], atol=0.51)
    assert np.abs(condition[15] - condition[14]).mean() > 0  # frames differ: a moving camera


def test_not_a_video_is_refused(tmp_path) -> None:
    bad = tmp_path / "flow.mp4"
    bad.write_text("not a video")
    with pytest.raises(FlowInputError, match="not a readable video"):
        read_flow_condition(bad)
    with pytest.raises(FlowInputError, match="unknown motion kind"):
        load_flow_condition(EXAMPLE, "optical", 16, 64, 128)


def write_flo(flow: np.ndarray, path: Path) -> Path:
    h, w = flow.shape[:2]
    path.write_bytes(np.float32(202021.25).tobytes() + np.array([w, h], "<i4").tobytes() + flow.astype("<f4").tobytes())
    return path


def test_raw_flow_formats_give_the_encoded_condition(tmp_path) -> None:
    flow = np.zeros((20, 16, 32, 2), np.float32)
    flow[..., 0] = np.linspace(-3, 3, 20)[:, None, None]  # a different rightward speed per frame
    np.save(tmp_path / "flow.npy", flow)
    np.savez(tmp_path / "flow.npz", flow=flow)
    expected_frames = flow[sample_indices(20, 8)] * 2  # the output is twice the size: vectors double
    expected = encode_flow(np.repeat(np.repeat(expected_frames, 2, axis=1), 2, axis=2)).astype(np.float32) / 127.5 - 1
    for name in ("flow.npy", "flow.npz"):
        condition = load_flow_condition(tmp_path / name, "raw_flow", 8, 32, 64)
        assert condition.shape == (8, 3, 32, 64)
        np.testing.assert_allclose(condition, expected.transpose(0, 3, 1, 2), atol=2 / 127.5)
    single = load_flow_condition(write_flo(flow[5], tmp_path / "one.flo"), "raw_flow", 4, 16, 32)
    assert single.shape == (4, 3, 16, 32) and np.all(single == single[0])  # one field, repeated


def test_panorama_clip_motion_is_copied(tmp_path) -> None:
    from tests.media.test_flow_and_geometry import seamless_panorama

    base = seamless_panorama(64, 128)
    clip = np.stack([np.roll(base, 2 * t, axis=1) for t in range(10)])
    path = write_video(clip, tmp_path / "clip.mp4", quality=0)
    condition = load_flow_condition(path, "panorama_clip", 8, 64, 128)
    expected = encode_flow(np.array([[[2.0, 0.0]]]))[0, 0].astype(np.float32) / 127.5 - 1
    centre = np.median(condition[:, :, 16:48].reshape(8, 3, -1), axis=-1)
    np.testing.assert_allclose(centre, np.broadcast_to(expected, (8, 3)), atol=0.1)


def test_hostile_uploads_fail_only_with_flow_input_errors(tmp_path) -> None:
    from tests.hostile_files import make_hostile_files

    accepted = []
    for hostile, path in make_hostile_files(tmp_path / "hostile"):
        try:  # what the API's upload check runs
            load_flow_condition(path, hostile.kind, 8, 32, 64)
            motion_length(path, hostile.kind)
        except FlowInputError as exc:
            assert path.name in str(exc) or "motion" in str(exc), exc
        else:
            accepted.append(hostile.name)
    assert accepted == []  # decodable but absurd videos (one frame, 5000 frames, 4096 x 16, pictures) included


def test_writer_gives_h264_yuv420p_with_moov_first(tmp_path) -> None:
    frames = np.random.default_rng(0).random((6, 64, 128, 3), dtype=np.float32)
    path = write_video(frames, tmp_path / "out" / "video.mp4", fps=8)
    stream = video_stream(path)
    assert (stream["codec_name"], stream["pix_fmt"], stream["width"], stream["height"]) == ("h264", "yuv420p", 128, 64)
    assert stream["nb_read_frames"] == "6" and stream["avg_frame_rate"] == "8/1"
    data = path.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # faststart
    assert [p.name for p in path.parent.iterdir()] == ["video.mp4"]  # no temporary file left behind


def test_writer_leaves_nothing_on_failure(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"\(F, H, W, 3\)"):
        write_video(np.zeros((2, 64, 128), np.float32), tmp_path / "video.mp4")
    assert list(tmp_path.iterdir()) == []
