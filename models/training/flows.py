"""Flow videos for a training set: `dvd360 data flows VIDEOS_DIR FLOWS_DIR`.

Every video gets a colour-coded flow video of the same name in FLOWS_DIR (the layout the dataset and the
published flows use), made by the project's flow extractor and the published colour encoding. Videos run in
parallel in a process pool; finished outputs are skipped, and outputs are written to a temporary file and
renamed, so an interrupted run resumes where it stopped and never leaves a half-written flow video behind.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.media.flow_extract import FlowBackend
from models.media.video_reader import list_videos_in, read_frames, video_info
from models.media.video_writer import write_video

log = logging.getLogger(__name__)


@dataclass
class FlowJob:
    video: Path
    output: Path
    backend: FlowBackend | str = "dis"
    size: tuple[int, int] | None = (512, 1024)  # (H, W) the video is resized to before extraction
    max_frames: int | None = None
    crf: int = 12


@dataclass
class FlowsReport:
    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)  # already finished
    failed: dict[str, str] = field(default_factory=dict)  # video -> error

    def summary(self) -> dict:
        return {"written": len(self.written), "skipped": len(self.skipped), "failed": len(self.failed)}


def flow_output_path(video: Path, flows_dir: Path) -> Path:
    return Path(flows_dir) / f"{video.stem}.mp4"


def make_flow_video(job: FlowJob) -> Path:
    """Extract, encode and write one flow video (runs in a worker process)."""
    from models.media.flow_encoding import encode_flow
    from models.media.flow_extract import extract_flow

    _, fps = video_info(job.video)
    indices = None if job.max_frames is None else range(min(job.max_frames, video_info(job.video)[0]))
    frames = read_frames(job.video, indices, job.size)
    if len(frames) < 2:
        raise ValueError(f"{job.video}: needs at least 2 frames for flow, has {len(frames)}")
    flow = extract_flow(frames, backend=job.backend)
    colours = np.asarray(encode_flow(flow), dtype=np.uint8)
    return write_video(colours, job.output, fps=round(fps), quality=job.crf, spherical=False)


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)  # one process per core already


def extract_dataset_flows(
    videos_dir: str | Path,
    flows_dir: str | Path,
    workers: int = 4,
    backend: FlowBackend | str = "dis",
    size: tuple[int, int] | None = (512, 1024),
    max_frames: int | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> FlowsReport:
    videos_dir, flows_dir = Path(videos_dir), Path(flows_dir)
    flows_dir.mkdir(parents=True, exist_ok=True)
    report = FlowsReport()
    jobs = []
    for video in list_videos_in(videos_dir):
        output = flow_output_path(video, flows_dir)
        if output.exists() and not overwrite:
            report.skipped.append(output)
        else:
            jobs.append(FlowJob(video, output, backend, size, max_frames))
    total, done = len(jobs), 0
    if progress is not None:
        progress(0, total)
    started = time.perf_counter()

    def finished(job: FlowJob, error: BaseException | None) -> None:
        nonlocal done
        done += 1
        if error is None:
            report.written.append(job.output)
        else:
            report.failed[str(job.video)] = f"{type(error).__name__}: {error}"
            log.warning("flow extraction failed for %s: %s", job.video, error)
        if progress is not None:
            progress(done, total)

    if workers <= 1 or total <= 1:
        for job in jobs:
            try:
                make_flow_video(job)
                finished(job, None)
            except Exception as exc:  # one bad video must not stop the dataset
                finished(job, exc)
    else:
        context = multiprocessing.get_context("spawn")  # no forked OpenCV/torch thread pools
        with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker) as pool:
            futures = {pool.submit(make_flow_video, job): job for job in jobs}
            for future in as_completed(futures):
                finished(futures[future], future.exception())
    log.info("flows: %s in %.1fs", report.summary(), time.perf_counter() - started)
    return report
