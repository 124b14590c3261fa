"""WEB360-style training clips: a CSV (videoid,name), a videos folder and a flows folder with the same names.

Each item is `num_frames` frames at `stride` from a random start, resized to height x width, with the flow
video's frames at the same indices. Augmentations (the authors' set): a random left-right mirror that keeps the
flow correct (picture mirrored *and* horizontal component negated, re-encoded), a random horizontal roll of
video and flow together, the caption dropped to "" (10%), the flow condition zeroed (20%).

Files that cannot be read are skipped, logged and counted (never retried in a loop): the item is replaced by
another random readable clip, and the bad file is remembered so it costs nothing twice.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from models.media.video_reader import CorruptVideo, find_video, read_frames, video_info
from models.training.flow_codec import flip_flow_colours, warm_flow_tables

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Augment:
    flip_prob: float = 0.5
    roll: bool = True
    caption_dropout: float = 0.1
    flow_dropout: float = 0.2

    @classmethod
    def none(cls) -> Augment:
        return cls(flip_prob=0.0, roll=False, caption_dropout=0.0, flow_dropout=0.0)


def read_caption_csv(path: str | Path) -> list[dict[str, str]]:
    """Rows of a videoid,name CSV (extra columns are kept, missing columns are an error)."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"videoid", "name"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))} (need videoid,name)")
        return [row for row in reader if row["videoid"].strip()]


def clip_indices(length: int, num_frames: int, stride: int, start: int) -> list[int]:
    return [start + i * stride for i in range(num_frames)]


def fit_stride(length: int, num_frames: int, stride: int) -> int:
    """The stride, shortened for clips too short to hold num_frames at it (AnimateDiff's rule); 0 if impossible."""
    if length < num_frames:
        return 0
    if num_frames == 1:
        return 1
    return max(1, min(stride, (length - 1) // (num_frames - 1)))


def to_unit_range(frames: np.ndarray) -> torch.Tensor:
    """uint8 (F, H, W, 3) -> float32 (F, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


class PanoramaClipDataset(Dataset):
    def __init__(
        self,
        csv_path: str | Path,
        videos_dir: str | Path,
        flows_dir: str | Path,
        num_frames: int = 16,
        stride: int = 4,
        height: int = 512,
        width: int = 1024,
        augment: Augment = Augment(),
    ) -> None:
        self.videos_dir, self.flows_dir = Path(videos_dir), Path(flows_dir)
        self.num_frames, self.stride = num_frames, stride
        self.size = (height, width)
        self.augment = augment
        self.items: list[tuple[str, str, Path, Path]] = []
        self.missing = 0
        for row in read_caption_csv(csv_path):
            video = find_video(self.videos_dir, row["videoid"])
            flow = find_video(self.flows_dir, video.name) if video is not None else None
            if flow is None and video is not None:
                flow = find_video(self.flows_dir, row["videoid"])
            if video is None or flow is None:
                self.missing += 1
                continue
            self.items.append((row["videoid"], row["name"], video, flow))
        if self.missing:
            log.warning(
                "%d of %d CSV rows have no video or no flow video; skipped", self.missing, self.missing + len(self)
            )
        if not self.items:
            raise ValueError(f"no usable clips: {csv_path} names no video found in both {videos_dir} and {flows_dir}")
        if augment.flip_prob > 0:
            warm_flow_tables()  # built once here, so DataLoader workers forked later inherit the tables
        self.skipped = 0  # unreadable files met by this process (workers count their own; collate reports them)
        self._bad: set[int] = set()
        self.max_attempts = 10
        self._lengths: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.items)

    def _length(self, index: int) -> int:
        if index not in self._lengths:
            _, _, video, flow = self.items[index]
            self._lengths[index] = min(video_info(video)[0], video_info(flow)[0])
        return self._lengths[index]

    def load(self, index: int, rng: np.random.Generator, augment: Augment | None = None) -> dict:
        """One clip; raises CorruptVideo for unreadable or too-short files."""
        augment = self.augment if augment is None else augment
        videoid, caption, video_path, flow_path = self.items[index]
        length = self._length(index)
        stride = fit_stride(length, self.num_frames, self.stride)
        if stride == 0:
            raise CorruptVideo(f"{video_path}: {length} frames (with flow) is fewer than {self.num_frames}")
        span = (self.num_frames - 1) * stride + 1
        start = int(rng.integers(0, length - span + 1))
        indices = clip_indices(length, self.num_frames, stride, start)
        video = read_frames(video_path, indices, self.size)
        flow = read_frames(flow_path, indices, self.size)

        if rng.random() < augment.flip_prob:
            video = video[:, :, ::-1]
            flow = flip_flow_colours(flow)
        if augment.roll:
            shift = int(rng.integers(0, self.size[1]))
            video = np.roll(video, shift, axis=2)
            flow = np.roll(flow, shift, axis=2)
        if rng.random() < augment.caption_dropout:
            caption = ""
        flow_tensor = to_unit_range(flow)
        if rng.random() < augment.flow_dropout:
            flow_tensor = torch.zeros_like(flow_tensor)  # the adapter's "no motion guidance" input
        return {"video": to_unit_range(video), "flow": flow_tensor, "caption": caption, "videoid": videoid}

    def __getitem__(self, index: int) -> dict:
        """The clip at `index`, or when its files are unreadable another random readable one.

        Each unreadable file is logged, counted once and remembered; at most `max_attempts` files are tried per
        item, so a dataset of broken files ends in an error instead of an endless retry loop. Always returning a
        full item keeps every process's batch the same size (multi-GPU steps must not diverge).
        """
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
        new_skips = 0
        for _ in range(self.max_attempts):
            if index not in self._bad:
                try:
                    item = self.load(index, rng)
                    item["skipped"] = new_skips
                    return item
                except (CorruptVideo, OSError, ValueError) as exc:
                    self._bad.add(index)
                    self.skipped += 1
                    new_skips += 1
                    log.warning(
                        "skipping unreadable clip %s (%s); %d skipped so far", self.items[index][0], exc, self.skipped
                    )
            good = [i for i in range(len(self.items)) if i not in self._bad]
            if not good:
                break
            index = int(rng.choice(good))
        raise RuntimeError(
            f"{self.skipped} unreadable clips and no readable one found in {self.max_attempts} attempts; check the data"
        )


def collate_clips(items: list[dict]) -> dict:
    """Stack a batch; `skipped` counts the unreadable files met (for the first time) while making it."""
    return {
        "video": torch.stack([item["video"] for item in items]),
        "flow": torch.stack([item["flow"] for item in items]),
        "caption": [item["caption"] for item in items],
        "videoid": [item["videoid"] for item in items],
        "skipped": sum(int(item.get("skipped", 0)) for item in items),
    }
