"""Spatial windows: any output size through a UNet that sees at most the model's native size at a time.

Above the native size (512 x 1024 for SD-1.5 models), each denoising step runs the UNet once per window, so a
step's memory is that of one native-size call whatever the output size, and its time grows with the area. The
spatial twin of the temporal context windows (`models.context_windows`):
- Windows tile the latents (`overlap` 0: each latent pixel is computed once per step) or overlap by at least
  `overlap` and are blended with weights that ramp across each overlap and sum to 1 at every latent pixel.
- The width wraps, as the panorama does: a window may straddle the left-right seam (its columns are taken modulo
  the width), and windows go all the way round. The height does not (the poles do not touch): windows that a
  shifted layout cuts at the top or bottom are shorter.
- The layout moves a quarter window every step, as the temporal windows' offsets and the latent rotation do, so
  no window border stays in one place through the sampling. The last step's layout is shifted by half a stride,
  so its borders sit away from the left-right seam and the equator; `borders` says where, for the quality figure
  (`models.media.evaluate`).
- Window sizes, positions and shifts are multiples of 8 latent pixels (64 output pixels): the UNet's coarsest
  map and the 360-Adapter's coarsest feature are 1/8 of the latents, so a window's UNet call is well formed and
  its adapter features are an exact crop of the full-size features at every level. (A window 8 latent pixels
  high, the tiny model's native height, therefore cannot move vertically; 16 or more can.)

Geometry only, torch-free: the quality figures read the borders from here. `models.spatial_blend` crops tensors
and blends the windows' predictions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ALIGN = 8  # latent pixels: the UNet's and the 360-Adapter's coarsest maps are 1/8 of the latents
LATENT_SCALE = 8  # output pixels per latent pixel (the VAE's three 2x upsamplings)


@dataclass(frozen=True)
class Span:
    """One window along one axis, in latent pixels: `length` indices from `start` (modulo the axis size on the
    wrapping width) and each index's blend weight (over all windows covering an index, the weights sum to 1)."""

    start: int
    length: int
    weights: tuple[float, ...]

    def indices(self, size: int) -> list[int]:
        return [(self.start + j) % size for j in range(self.length)]


@dataclass(frozen=True)
class Region:
    """One spatial window: latent rows (never wrapping) and columns (wrapping)."""

    rows: Span
    columns: Span

    def covers(self, height: int, width: int) -> bool:
        """The whole latent picture, in order: one UNet call, exactly as without windows."""
        return (self.rows.start, self.rows.length, self.columns.start, self.columns.length) == (0, height, 0, width)


@dataclass(frozen=True)
class SpatialWindows:
    """The window size and least overlap, in latent pixels (multiples of 8)."""

    height: int
    width: int
    overlap: int = 0

    def __post_init__(self) -> None:
        if min(self.height, self.width) < ALIGN or self.height % ALIGN or self.width % ALIGN:
            raise ValueError(
                f"spatial windows must be positive multiples of {ALIGN * LATENT_SCALE} pixels "
                f"({ALIGN} latent pixels), got {self.height * LATENT_SCALE} x {self.width * LATENT_SCALE}"
            )
        if self.overlap < 0 or self.overlap % ALIGN or self.overlap >= min(self.height, self.width):
            raise ValueError(
                f"the spatial window overlap must be a multiple of {ALIGN * LATENT_SCALE} pixels, smaller than the "
                f"window, got {self.overlap * LATENT_SCALE}"
            )

    @classmethod
    def from_pixels(cls, window: tuple[int, int], overlap: int = 0) -> SpatialWindows:
        """Windows of (height, width) output pixels overlapping by at least `overlap` pixels."""
        height, width = window
        step = ALIGN * LATENT_SCALE
        if height % step or width % step or overlap % step:
            raise ValueError(
                f"spatial windows and their overlap must be multiples of {step} pixels, got {height} x {width} "
                f"overlapping by {overlap}"
            )
        return cls(height // LATENT_SCALE, width // LATENT_SCALE, overlap // LATENT_SCALE)

    @property
    def pixels(self) -> tuple[int, int]:
        return self.height * LATENT_SCALE, self.width * LATENT_SCALE

    def needed(self, height: int, width: int) -> bool:
        """Whether latents of this size need windows; within one window they are a single UNet call."""
        return height > self.height or width > self.width

    def layout(self, height: int, width: int, step: int, total_steps: int, column_shift: int = 0) -> list[Region]:
        """The windows of step `step` over (height, width) latents, every latent pixel covered. Positions are
        chosen in panorama coordinates; `column_shift` is how far the latents are rolled along the width (the
        latent rotation so far), so the columns returned index the rolled latents."""
        rows = self._rows(height, step, total_steps)
        columns = self._columns(width, step, total_steps, column_shift)
        return [Region(r, c) for r in rows for c in columns]

    def borders(self, height: int, width: int) -> tuple[list[int], list[int]]:
        """(rows, columns) in latent pixels where the last step's windows end inside the picture (a border at k
        lies between indices k - 1 and k), facing where the output faces: where window seams would show. The
        top, the bottom and the left-right seam (column 0) are not window borders."""
        rows = self._rows(height, 0, 1)
        columns = self._columns(width, 0, 1, 0)
        row_edges = {e for s in rows for e in (s.start, s.start + s.length)} - {0, height}
        column_edges = {e % width for s in columns for e in (s.start, s.start + s.length)} - {0}
        return sorted(row_edges), sorted(column_edges) if len(columns) > 1 else []

    def _offset(self, length: int, stride: int, period: int, step: int, total_steps: int) -> int:
        """Half a stride at the last step, a quarter window further back per earlier step (multiples of 8)."""
        shift = max(ALIGN, length // 4 // ALIGN * ALIGN)
        half = stride // 2 // ALIGN * ALIGN
        return (half + (total_steps - 1 - step) * shift) % period

    def _rows(self, size: int, step: int, total_steps: int) -> list[Span]:
        if size <= self.height:
            return [_whole(size)]
        stride = self.height - self.overlap
        offset = self._offset(self.height, stride, stride, step, total_steps)
        bounds = [(max(s, 0), min(s + self.height, size)) for s in range(offset - stride, size, stride)]
        bounds = [b for b in bounds if b[1] > b[0]]
        # a window cut at the top or bottom can fall inside its neighbour: it would add nothing
        bounds = [b for b in bounds if not any(o != b and o[0] <= b[0] and b[1] <= o[1] for o in bounds)]
        return _spans(bounds, size)

    def _columns(self, size: int, step: int, total_steps: int, column_shift: int) -> list[Span]:
        if size <= self.width:
            return [_whole(size)]
        # evenly spaced all the way round, in units of 8 so gaps differ by at most 8 and none exceeds the stride
        units, stride_units = size // ALIGN, (self.width - self.overlap) // ALIGN
        count = math.ceil(units / stride_units)
        offset = self._offset(self.width, units // count * ALIGN, size, step, total_steps)
        starts = [offset + column_shift + ALIGN * (k * units // count) for k in range(count)]
        return _spans([(s, s + self.width) for s in starts], size)


def _whole(size: int) -> Span:
    return Span(0, size, (1.0,) * size)


def _spans(bounds: list[tuple[int, int]], size: int) -> list[Span]:
    """Spans for [start, end) windows along an axis of `size` (indices modulo `size`), each weighted by a tent
    (distance to its nearer end) normalised over the windows covering an index: 1 where a window is alone, and
    ramps summing to 1 across each overlap."""
    tents = [[min(p + 0.5, end - start - p - 0.5) for p in range(end - start)] for start, end in bounds]
    total = [0.0] * size
    for (start, _), tent in zip(bounds, tents, strict=True):
        for p, value in enumerate(tent):
            total[(start + p) % size] += value
    return [
        Span(start % size, end - start, tuple(v / total[(start + p) % size] for p, v in enumerate(tent)))
        for (start, end), tent in zip(bounds, tents, strict=True)
    ]
