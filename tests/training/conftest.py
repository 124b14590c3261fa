"""Tiny synthetic 360 data made by the tests: ERP clips with known motion and their encoded flow videos."""

from __future__ import annotations

import csv
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

H, W = 64, 128
CLIP_FRAMES = 12
# (videoid, caption, horizontal speed in pixels per frame: the panorama turns, so the flow is (speed, 0))
CLIPS = [("pan_right", "a beach turning right", 3), ("pan_left", "a forest turning left", -2), ("still", "a room", 0)]


def write_mp4(frames: np.ndarray, path: Path, fps: int = 8) -> Path:
    """Near-lossless H.264 (4:4:4, crf 0) so the colours of flow videos survive."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv444p"
        stream.options = {"crf": "0"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())
    return path


def erp_texture(h: int = H, w: int = W, seed: int = 0) -> np.ndarray:
    """A smooth, seamless equirectangular picture (periodic in longitude) with a few coloured blobs."""
    rng = np.random.default_rng(seed)
    lon = np.linspace(0, 2 * np.pi, w, endpoint=False)[None, :]
    lat = np.linspace(-np.pi / 2, np.pi / 2, h)[:, None]
    channels = []
    for _ in range(3):
        k, phase = rng.integers(1, 4), rng.uniform(0, 2 * np.pi)
        channels.append(0.5 + 0.35 * np.sin(k * lon + phase) * np.cos(lat) + 0.15 * np.cos(3 * lat))
    image = np.stack(channels, axis=-1)
    for _ in range(4):
        cy, cx = rng.integers(h // 4, 3 * h // 4), rng.integers(0, w)
        dx = np.minimum(np.abs(np.arange(w) - cx), w - np.abs(np.arange(w) - cx))[None, :]
        dy = (np.arange(h) - cy)[:, None]
        image += rng.uniform(-0.4, 0.4, 3) * np.exp(-(dx**2 + dy**2) / 30.0)[..., None]
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def turning_clip(speed: int, frames: int = CLIP_FRAMES, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(frames, H, W, 3) uint8 of a panorama turning by `speed` px per frame, and its (frames-1, H, W, 2) flow."""
    base = erp_texture(seed=seed)
    video = np.stack([np.roll(base, t * speed, axis=1) for t in range(frames)])
    flow = np.zeros((frames - 1, H, W, 2), dtype=np.float32)
    flow[..., 0] = speed
    return video, flow


def make_dataset(root: Path, corrupt: bool = False) -> dict[str, Path]:
    from models.media.flow_encoding import encode_flow

    videos, flows = root / "videos", root / "flows"
    videos.mkdir(parents=True, exist_ok=True)
    flows.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (videoid, caption, speed) in enumerate(CLIPS):
        video, flow = turning_clip(speed, seed=i)
        write_mp4(video, videos / f"{videoid}.mp4")
        write_mp4(np.asarray(encode_flow(flow), dtype=np.uint8), flows / f"{videoid}.mp4")
        rows.append((videoid, caption))
    if corrupt:
        (videos / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
        (flows / "broken.mp4").write_bytes(b"garbage")
        rows.append(("broken", "a broken file"))
    rows.append(("absent", "a clip whose files are missing"))
    csv_path = root / "web360.csv"
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["videoid", "name"])
        writer.writerows(rows)
    return {"csv": csv_path, "videos": videos, "flows": flows}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models run faster on one thread, and the test machine's cores are shared; restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> dict[str, Path]:
    return make_dataset(tmp_path_factory.mktemp("web360"), corrupt=True)


@pytest.fixture(scope="session")
def clean_data(tmp_path_factory) -> dict[str, Path]:
    return make_dataset(tmp_path_factory.mktemp("web360clean"))


def dataset_settings(data: dict[str, Path]) -> dict:
    """Training settings that point at a test dataset with small clips."""
    return {
        "csv": str(data["csv"]),
        "videos_dir": str(data["videos"]),
        "flows_dir": str(data["flows"]),
        "num_frames": 4,
        "stride": 2,
        "height": H,
        "width": W,
        "num_workers": 0,
    }


def tiny_config(data: dict[str, Path], output_dir: Path, **overrides):
    from models.training.config import TrainConfig

    values = {
        **dataset_settings(data),
        "model": "tiny",
        "output_dir": str(output_dir),
        "max_steps": 4,
        "learning_rate": 1e-3,
        "checkpoint_every": 0,
        "log_every": 1,
        "progress": False,
        "seed": 0,
    }
    values.update(overrides)
    return TrainConfig.from_dict(values)
