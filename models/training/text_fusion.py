"""360 Text Fusion: caption a panorama from four 90-degree perspective views fused into one caption.

For each video: one frame (the middle one by default) -> perspective views at yaw 0, 90, -90, 180 (pitch 0,
FoV 90) -> one caption per view (BLIP or any Captioner) -> one panorama caption from the chat endpoint
(FusionClient). Rows go to a CSV in the dataset's format (videoid,name), appended and flushed one video at a
time: a rerun skips the videos already in the file, and a video that failed is simply tried again.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.media.video_reader import list_videos_in, read_frames, video_info
from models.training.captioner import Captioner
from models.training.fusion_client import FusionClient

log = logging.getLogger(__name__)

VIEW_YAWS = (0.0, 90.0, -90.0, 180.0)  # front, right, left, back
VIEW_FOV = 90.0


@dataclass
class CaptionReport:
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict:
        return {"written": len(self.written), "skipped": len(self.skipped), "failed": len(self.failed)}


def perspective_views(erp: np.ndarray, size: int = 512) -> list[np.ndarray]:
    """Four uint8 (size, size, 3) views of an ERP frame at yaw 0, 90, -90, 180, pitch 0, 90-degree FoV."""
    from models.media.erp import perspective_from_erp

    views = []
    for yaw in VIEW_YAWS:
        view = np.asarray(perspective_from_erp(erp, yaw, 0.0, VIEW_FOV, size, size))
        if view.dtype != np.uint8:
            view = np.clip(np.rint(view), 0, 255).astype(np.uint8)
        views.append(view)
    return views


def pick_frame(path: Path, frame: str | int = "middle") -> np.ndarray:
    count = video_info(path)[0]
    index = count // 2 if frame == "middle" else min(int(frame), count - 1)
    return read_frames(path, [index])[0]


def read_done(csv_path: Path) -> set[str]:
    """videoids already captioned; a torn last line (a crash mid-write) is cut off first."""
    if not csv_path.exists() or csv_path.stat().st_size == 0:
        return set()
    data = csv_path.read_bytes()
    if not data.endswith(b"\n"):
        with open(csv_path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None:
            return set()
        if "videoid" not in reader.fieldnames or "name" not in reader.fieldnames:
            raise ValueError(f"{csv_path} exists but is not a videoid,name CSV")
        return {row["videoid"] for row in reader if row.get("name")}


def caption_videos(
    videos_dir: str | Path,
    out_csv: str | Path,
    captioner: Captioner,
    fusion: FusionClient,
    frame: str | int = "middle",
    view_size: int = 512,
    progress: Callable[[int, int], None] | None = None,
) -> CaptionReport:
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    done = read_done(out_csv)
    report = CaptionReport()
    videos = list_videos_in(videos_dir)
    todo = []
    for video in videos:
        if video.stem in done:
            report.skipped.append(video.stem)
        else:
            todo.append(video)
    new_file = not out_csv.exists() or out_csv.stat().st_size == 0
    with open(out_csv, "a", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        if new_file:
            writer.writerow(["videoid", "name"])
            f.flush()
        for i, video in enumerate(todo):
            try:
                views = perspective_views(pick_frame(video, frame), view_size)
                captions = captioner.caption(views)
                caption = fusion.fuse(captions)
            except Exception as exc:  # one bad video (or an endpoint that gave up) must not stop the dataset
                report.failed[video.stem] = f"{type(exc).__name__}: {exc}"
                log.warning("captioning %s failed: %s", video.name, exc)
            else:
                writer.writerow([video.stem, caption])
                f.flush()
                os.fsync(f.fileno())
                report.written.append(video.stem)
            if progress is not None:
                progress(i + 1, len(todo))
    return report
