"""Panorama video scores: how seamless the left/right edge is, how steady the frames are, whether the video
loops without a jump and whether its temporal or spatial windows show. Torch-free.

The scores are computed a frame at a time (`VideoScores`), so a worker can score the frames as they stream to the
encoder and `dvd360 evaluate` can score a 2048 x 4096 file while holding two frames. What the numbers mean, and
what the tiny model's random weights score: docs/quality-figures.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

from models.media.errors import VideoFileError
from models.media.flow_video import stream_rgb
from models.spatial_windows import LATENT_SCALE, SpatialWindows

CONTEXT_LENGTH = 16  # mm_sd_v14's context windows (models.context_windows), where window seams would be
# The seam (last column | first column) sits on an 8-pixel grid: that of the VAE's latent cells (8 pixels each) and of
# H.264's 8 x 8 transform blocks and 4:2:0 chroma pairs. Neighbouring columns inside a cell or a block differ less
# than across it (before and after encoding), so the seam is compared with the interior boundaries on that grid.
GRID = 8
NEIGHBOURS = 2  # a window border's step is compared with the steps this many lines either side of it


class VideoScores:
    """The scores of a video fed a chunk of frames at a time: (n, H, W, 3) pixels, float in [0, 1] or uint8.

    - end_continuity: mean |last column - first column| (PanoWan, PanFlow); published models 0.027-0.034.
    - seam_ratio: end_continuity over the mean difference across interior column boundaries on the 8-pixel grid
      (GRID): ~1 when the left-right seam looks like any other boundary there, in the generated frames and in
      their H.264 file alike (against all column boundaries, H.264 alone lifted noise-like videos from 0.9 to
      1.3-1.4).
    - frame_consistency: mean |frame t+1 - frame t| (0: a still).
    - loop_closure: mean |first frame - last frame| over the median step between consecutive frames: ~1 when the
      video loops without a jump (for videos made with `loop`; any other video jumps back, usually well above 1).
    - window_seam_ratio: the mean step into frames at multiples of `window`, where temporal context windows meet,
      over the mean step elsewhere: ~1 when the windows do not show; None for videos of at most one window.
    - spatial_window_seam_ratio: the steps across the last denoising step's spatial window borders
      (`spatial_windows`, pictures larger than a window) over the steps across the lines beside them, on the
      picture averaged over 8 x 8 blocks (one block per latent pixel, where windows are cut): ~1 when the windows
      do not show; None without spatial windows.
    Each ratio of a video that is noise-like, as the tiny model's random weights make, is ~1 whatever happens; the
    expected ranges are in docs/quality-figures.md.
    """

    def __init__(self, window: int = CONTEXT_LENGTH, spatial_windows: SpatialWindows | None = None) -> None:
        self.window = window
        self.spatial_windows = spatial_windows
        self._first: np.ndarray | None = None
        self._previous: np.ndarray | None = None
        self._steps: list[float] = []  # mean |frame t+1 - frame t| per t
        self._ends: list[float] = []  # mean |last column - first column| per frame
        self._interior: list[float] = []  # mean |column c - column c-1| per frame, c on the grid
        self._row_steps: np.ndarray | None = None  # per block-row line, summed over frames
        self._column_steps: np.ndarray | None = None  # per block-column line (0: the seam), summed over frames

    def add(self, chunk: np.ndarray) -> None:
        for frame in np.asarray(chunk):
            self._add_frame(frame.astype(np.float32) / 255 if frame.dtype == np.uint8 else frame.astype(np.float32))

    def passing(self, chunks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """The chunks unchanged, each scored on its way (e.g. to `write_video`)."""
        for chunk in chunks:
            self.add(chunk)
            yield chunk

    def _add_frame(self, frame: np.ndarray) -> None:
        if self._previous is not None and frame.shape != self._previous.shape:
            raise ValueError(f"frames must share one size, got {frame.shape} after {self._previous.shape}")
        self._ends.append(float(np.abs(frame[:, -1] - frame[:, 0]).mean()))
        right = np.arange(GRID, frame.shape[1], GRID) if frame.shape[1] > GRID else np.arange(1, frame.shape[1])
        self._interior.append(float(np.abs(frame[:, right] - frame[:, right - 1]).mean()))
        if self._previous is None:
            self._first = frame
        else:
            self._steps.append(float(np.abs(frame - self._previous).mean()))
        self._previous = frame
        if self._borders(frame.shape[:2]) is not None:
            rows, columns = _block_steps(frame)
            self._row_steps = rows if self._row_steps is None else self._row_steps + rows
            self._column_steps = columns if self._column_steps is None else self._column_steps + columns

    def _borders(self, size: tuple[int, int]) -> tuple[list[int], list[int]] | None:
        height, width = size
        if self.spatial_windows is None or height % LATENT_SCALE or width % LATENT_SCALE:
            return None
        latent = (height // LATENT_SCALE, width // LATENT_SCALE)
        return self.spatial_windows.borders(*latent) if self.spatial_windows.needed(*latent) else None

    def result(self) -> dict[str, float | None]:
        if self._first is None or self._previous is None:
            raise ValueError("no frames were scored")
        steps = np.array(self._steps)
        boundary = np.zeros(len(steps), bool)
        boundary[self.window - 1 :: self.window] = True  # step i goes from frame i to frame i + 1
        median = float(np.median(steps)) if len(steps) else 0.0
        closure = float(np.abs(self._previous - self._first).mean())
        end_continuity, interior = float(np.mean(self._ends)), float(np.mean(self._interior))
        borders = self._borders(self._first.shape[:2])
        return {
            "end_continuity": end_continuity,
            "seam_ratio": end_continuity / interior if interior > 0 else 0.0,
            "frame_consistency": float(steps.mean()) if len(steps) else 0.0,
            "loop_closure": closure / median if median > 0 else 0.0,
            "window_seam_ratio": _ratio(steps[boundary], steps[~boundary]),
            "spatial_window_seam_ratio": None if borders is None else self._border_ratio(*borders),
        }

    def _border_ratio(self, row_borders: list[int], column_borders: list[int]) -> float | None:
        """Sum of the steps across border lines over the sum of their neighbours' (non-border lines within
        NEIGHBOURS; columns wrap, the seam is not a neighbour): local, so the latitude's effect on ERP rows cancels."""
        across, beside = 0.0, 0.0
        lines = ((self._row_steps, row_borders, False), (self._column_steps, column_borders, True))
        for steps, borders, wrap in lines:
            excluded = {*borders, 0}  # row line 0 does not exist; column line 0 is the seam
            for line in borders:
                near = [line + d for d in range(-NEIGHBOURS, NEIGHBOURS + 1) if d]
                near = [n % len(steps) if wrap else n for n in near if wrap or 0 < n < len(steps)]
                near = [n for n in near if n not in excluded]
                if near:
                    across += float(steps[line])
                    beside += float(np.mean(steps[near]))
        return across / beside if beside > 0 else None


def _block_steps(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (H, W, 3) frame averaged over 8 x 8 blocks and channels; the mean |difference| across each block-row
    line r (between rows r - 1 and r; line 0 unused) and block-column line c (line 0: the last and first)."""
    h, w = frame.shape[0] // LATENT_SCALE, frame.shape[1] // LATENT_SCALE
    blocks = frame.reshape(h, LATENT_SCALE, w, LATENT_SCALE, -1).mean(axis=(1, 3, 4))
    rows = np.zeros(h)
    rows[1:] = np.abs(np.diff(blocks, axis=0)).mean(axis=1)
    columns = np.abs(blocks - np.roll(blocks, 1, axis=1)).mean(axis=0)
    return rows, columns


def _ratio(part: np.ndarray, rest: np.ndarray) -> float | None:
    return float(part.mean() / rest.mean()) if len(part) and len(rest) and rest.mean() > 0 else None


def composition_difference(video: np.ndarray, reference: np.ndarray, size: tuple[int, int] = (4, 8)) -> float:
    """Mean |difference| between two channels-last videos, (F, H, W, C) of any two sizes, after each frame is
    averaged down to `size` (height, width) blocks: how far one video's composition (where its large shapes and
    colours sit) is from the other's, e.g. a high-resolution output from the native-size pass of the same seed.
    Frames in [0, 1], or latents (`PanoramaVideo.latents[0]` channels-last, which no decoder's behaviour at
    another size blurs). 0: the same composition; compare with what another seed scores."""

    def low_pass(frames: np.ndarray) -> np.ndarray:
        resized = [cv2.resize(np.asarray(f, np.float32), size[::-1], interpolation=cv2.INTER_AREA) for f in frames]
        return np.stack(resized)

    return float(np.abs(low_pass(video) - low_pass(reference)).mean())


def evaluate_frames(
    frames: np.ndarray, window: int = CONTEXT_LENGTH, spatial_windows: SpatialWindows | None = None
) -> dict[str, float | None]:
    """(F, H, W, 3) pixels in [0, 1] -> the scores of `VideoScores`."""
    scores = VideoScores(window, spatial_windows)
    scores.add(frames)
    return scores.result()


def evaluate_video(
    path: str | Path, window: int = CONTEXT_LENGTH, spatial_windows: SpatialWindows | None = None
) -> dict[str, float | int | None]:
    """The scores of a video file, decoded a frame at a time, with its frame count and size."""
    scores = VideoScores(window, spatial_windows)
    count, size = 0, (0, 0)
    for frame in stream_rgb(path) if Path(path).is_file() else ():
        scores.add(frame[None])
        count, size = count + 1, frame.shape[:2]
    if count == 0:
        raise VideoFileError(f"{path}: no video frames to evaluate")
    return {**scores.result(), "frames": count, "height": int(size[0]), "width": int(size[1])}
