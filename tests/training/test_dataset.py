import numpy as np
import pytest
import torch

from models.training.dataset import Augment, PanoramaClipDataset, collate_clips, fit_stride
from models.training.flow_codec import decode_flow_colours, flip_flow_colours, flip_raw_flow
from tests.training.conftest import CLIPS, H, W


def _encode(flow):
    from models.media.flow_encoding import encode_flow

    return np.asarray(encode_flow(flow), dtype=np.uint8)


def _to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """(F, 3, H, W) in [-1, 1] -> (F, H, W, 3) uint8."""
    return ((tensor.permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)


def _dataset(data, augment, **kw):
    return PanoramaClipDataset(
        data["csv"], data["videos"], data["flows"], num_frames=4, stride=2, height=H, width=W, augment=augment, **kw
    )


def _asymmetric_flow() -> np.ndarray:
    y, x = np.mgrid[0:16, 0:32].astype(np.float32)
    return np.stack([2 + 6 * np.sin(x / 5), 3 * np.cos(y / 4) - x / 10], axis=-1)[None]  # (1, 16, 32, 2)


def test_flipped_flow_colours_decode_to_the_mirrored_field_with_u_negated():
    flow = _asymmetric_flow()
    decoded = decode_flow_colours(flip_flow_colours(_encode(flow)))
    truth = flip_raw_flow(flow)
    assert np.allclose(truth[..., 0], -flow[..., ::-1, 0]) and np.allclose(truth[..., 1], flow[..., ::-1, 1])
    assert np.abs(decoded - truth).mean() < 0.3
    # The naive flip (mirror the picture only) is wrong: its horizontal component points the other way.
    naive = decode_flow_colours(np.ascontiguousarray(_encode(flow)[..., ::-1, :]))
    assert np.abs(naive[..., 0] - truth[..., 0]).mean() > 3


def test_flipped_colours_match_encoding_the_flipped_field():
    flow = _asymmetric_flow()
    flipped = flip_flow_colours(_encode(flow)).astype(int)
    assert np.abs(flipped - _encode(flip_raw_flow(flow)).astype(int)).mean() < 2


def test_decoding_recovers_known_flow():
    flow = _asymmetric_flow()
    assert np.abs(decode_flow_colours(_encode(flow)) - flow).mean() < 0.3
    assert np.abs(decode_flow_colours(_encode(np.zeros((1, 4, 4, 2))))).max() < 0.05


def test_dataset_flip_mirrors_video_and_negates_the_decoded_flow(clean_data):
    ds = _dataset(clean_data, Augment.none())
    index = next(i for i, item in enumerate(ds.items) if item[0] == "pan_right")
    speed = dict((c[0], c[2]) for c in CLIPS)["pan_right"]
    plain = ds.load(index, np.random.default_rng(1), Augment.none())
    flipped = ds.load(index, np.random.default_rng(1), Augment(1.0, False, 0.0, 0.0))
    assert torch.equal(flipped["video"], plain["video"].flip(-1))
    u_plain = decode_flow_colours(_to_uint8(plain["flow"]))[..., 0]
    u_flipped = decode_flow_colours(_to_uint8(flipped["flow"]))[..., 0]
    assert abs(np.median(u_plain) - speed) < 0.5
    assert abs(np.median(u_flipped) + speed) < 0.5


def test_dataset_roll_moves_video_and_flow_together(clean_data):
    # Flow pictures of a turning panorama are uniform; use the (textured) videos as their own "flows" so a roll
    # of the flow is visible.
    ds = _dataset({**clean_data, "flows": clean_data["videos"]}, Augment.none())
    plain = ds.load(0, np.random.default_rng(5), Augment.none())
    rolled = ds.load(0, np.random.default_rng(5), Augment(0.0, True, 0.0, 0.0))
    shifts = [s for s in range(W) if torch.equal(torch.roll(plain["video"], s, dims=-1), rolled["video"])]
    assert len(shifts) == 1 and shifts[0] != 0
    assert torch.equal(torch.roll(plain["flow"], shifts[0], dims=-1), rolled["flow"])


def test_clip_shape_range_and_frame_stride(clean_data):
    ds = _dataset(clean_data, Augment.none())
    item = ds.load(0, np.random.default_rng(0))
    assert item["video"].shape == (4, 3, H, W) and item["flow"].shape == (4, 3, H, W)
    assert item["video"].min() >= -1 and item["video"].max() <= 1
    assert fit_stride(12, 4, 2) == 2 and fit_stride(7, 4, 4) == 2 and fit_stride(3, 4, 1) == 0


def test_caption_and_flow_dropout_rates(clean_data):
    ds = _dataset(clean_data, Augment(0.0, False, 0.1, 0.2))
    torch.manual_seed(0)
    items = [ds[i % len(ds)] for i in range(150)]
    captions = np.mean([item["caption"] == "" for item in items])
    zeroed = np.mean([bool((item["flow"] == 0).all()) for item in items])
    assert 0.03 < captions < 0.2
    assert 0.1 < zeroed < 0.32


def test_corrupt_and_missing_files_are_skipped_and_counted_once(tiny_data, caplog):
    ds = _dataset(tiny_data, Augment.none())
    assert ds.missing == 1 and len(ds) == len(CLIPS) + 1
    broken = next(i for i, item in enumerate(ds.items) if item[0] == "broken")
    torch.manual_seed(0)
    first = ds[broken]
    assert first["videoid"] != "broken" and first["skipped"] == 1
    second = ds[broken]
    assert second["videoid"] != "broken" and second["skipped"] == 0
    assert ds.skipped == 1 and "unreadable" in caplog.text
    batch = collate_clips([first, second])
    assert batch["skipped"] == 1 and batch["video"].shape[0] == 2


def test_all_broken_data_fails_instead_of_retrying_forever(tmp_path):
    (tmp_path / "v").mkdir()
    (tmp_path / "f").mkdir()
    for name in ("a", "b"):
        (tmp_path / "v" / f"{name}.mp4").write_bytes(b"nope")
        (tmp_path / "f" / f"{name}.mp4").write_bytes(b"nope")
    (tmp_path / "c.csv").write_text("videoid,name\na,x\nb,y\n")
    ds = PanoramaClipDataset(tmp_path / "c.csv", tmp_path / "v", tmp_path / "f", num_frames=4, height=H, width=W)
    with pytest.raises(RuntimeError, match="unreadable"):
        ds[0]
    assert ds.skipped == 2
