"""What the quality figures score on the tiny model's random weights, for docs/quality-figures.md. Prints JSON.

    PYTHONPATH=. .venv/bin/python benchmarks/quality_figures.py              # 6 seeds, ~3 min on 2 cores
    PYTHONPATH=. .venv/bin/python benchmarks/quality_figures.py --seeds 10

Each video is made as a job makes it (CLI/service defaults for the tiny model: 4 steps, guidance 7.5, 8 fps),
encoded to H.264 by `write_video` and scored from the file (`evaluate_video`, what `dvd360 evaluate` prints); the
same scores of the float frames before encoding are reported beside them (`VideoScores` fed the streamed chunks,
as a worker would). Videos: the tiny defaults (8 x 64 x 128), an 8-frame loop, the README's long loop (64 frames,
`--loop --interpolate-to 24`, scored with window 48), 40 frames (temporal windows), and 256 x 512 (16x the native
area: spatial windows) refined and plain. Reports min / median / max over seeds per figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FIGURES = ("seam_ratio", "loop_closure", "window_seam_ratio", "spatial_window_seam_ratio", "end_continuity")
VIDEOS = {
    "default_8x64x128": {"num_frames": 8},
    "loop_8": {"num_frames": 8, "loop": True},
    "loop_64_interpolated_24fps": {"num_frames": 64, "loop": True, "interpolate_to": 24},
    "long_40": {"num_frames": 40},
    "refine_256x512": {"num_frames": 8, "height": 256, "width": 512},
    "plain_windows_256x512": {"num_frames": 8, "height": 256, "width": 512, "refine": False},
}


def score(pipe, folder: Path, seed: int, settings: dict) -> dict:
    from models.media.evaluate import VideoScores, evaluate_video
    from models.media.interpolate import interpolate_frames
    from models.media.video_writer import write_video

    settings = dict(settings)
    interpolate_to = settings.pop("interpolate_to", None)
    job = {"height": 64, "width": 128, "num_inference_steps": 4, "guidance_scale": 7.5, **settings}
    video = pipe("a quiet lake at dawn, 360 panorama", seed=seed, **job)
    window = pipe.context_windows.length * (interpolate_to // 8 if interpolate_to else 1)
    streamed = VideoScores(window, video.spatial_windows)
    chunks = video.chunks()
    if interpolate_to:
        chunks = interpolate_frames(chunks, job["num_frames"], 8, interpolate_to, job.get("loop", False))
    path = write_video(streamed.passing(chunks), folder / f"{seed}.mp4", fps=interpolate_to or 8)
    return {"file": evaluate_video(path, window, video.spatial_windows), "frames": streamed.result()}


def spread(values: list) -> list | None:
    values = [v for v in values if v is not None]
    return [round(float(q), 3) for q in np.quantile(values, [0, 0.5, 1])] if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from models.tiny import build_tiny_pipeline

    torch.set_num_threads(args.threads)
    pipe = build_tiny_pipeline(seed=0)
    report = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, settings in VIDEOS.items():
            runs = [score(pipe, Path(folder), seed, settings) for seed in range(args.seeds)]
            report[name] = {
                source: {figure: spread([r[source][figure] for r in runs]) for figure in FIGURES}
                for source in ("file", "frames")
            }
    print(json.dumps({"seeds": args.seeds, "min_median_max": report}, indent=1))


if __name__ == "__main__":
    main()
