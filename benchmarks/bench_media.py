"""Media speed on this machine, printed as JSON (not a test).

Targets (2-core CPU): encode + inject 16 frames of 512 x 1024 under 0.5 s; flow extraction from 17 frames of
512 x 1024 under 5 s.  Run: PYTHONPATH=. .venv/bin/python benchmarks/bench_media.py
`--raft large small` also times the RAFT backend on the same clip (random weights in torchvision's layout:
speed does not depend on their values), on `--device` (default: CUDA when present).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from models.media.flow_extract import FlowBackend, extract_flow
from models.media.video_writer import write_video


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def textured_clip(frames: int, h: int, w: int) -> np.ndarray:
    """Smooth panorama texture turning 4 px per frame: realistic content for the encoder and the flow."""
    lon = np.linspace(0, 2 * np.pi, w, endpoint=False)[None, :, None]
    lat = np.linspace(-1.5, 1.5, h)[:, None, None]
    base = 0.5 + 0.25 * np.sin(np.array([3, 5, 7]) * lon + np.array([1, 2, 3]) * lat) * np.cos(lat)
    base = (np.clip(base, 0, 1) * 255).astype(np.uint8)
    return np.stack([np.roll(base, 4 * t, axis=1) for t in range(frames)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--raft", nargs="*", choices=["large", "small"], default=[])
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    clip = textured_clip(17, 512, 1024)
    with tempfile.TemporaryDirectory() as tmp:
        write_s = best_of(args.repeats, lambda: write_video(clip[:16], Path(tmp) / "out.mp4"))
        raft_s = {
            size: round(best_of(args.repeats, raft_run(clip, size, Path(tmp), args.device)), 3) for size in args.raft
        }
    flow_s = best_of(args.repeats, lambda: extract_flow(clip))
    figures = {
        "encode_inject_16x512x1024_s": round(write_s, 3),
        "encode_inject_target_s": 0.5,
        "flow_extract_17x512x1024_s": round(flow_s, 3),
        "flow_extract_target_s": 5.0,
        "repeats": args.repeats,
    }
    figures.update({f"raft_{size}_17x512x1024_s": seconds for size, seconds in raft_s.items()})
    print(json.dumps(figures))


def raft_run(clip: np.ndarray, size: str, folder: Path, device: str | None):
    """A RAFT extraction of the clip, with the model loaded (and warmed up) before timing starts."""
    import torch

    from models.raft import LARGE, SMALL, Raft

    weights = folder / f"raft_{size}.pth"
    torch.save(Raft(LARGE if size == "large" else SMALL).state_dict(), weights)
    backend = FlowBackend("raft", weights, device)
    extract_flow(clip[:2], backend)
    return lambda: extract_flow(clip, backend)


if __name__ == "__main__":
    main()
