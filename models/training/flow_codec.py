"""Reading flow vectors back out of the published colour-coded flow videos, and mirroring them correctly.

The flow condition is a colour picture of the flow (models.media.flow_encoding.encode_flow). Mirroring the
panorama left-right mirrors the picture *and* negates every horizontal flow component, which changes the
colours; flipping the picture alone would tell the adapter that everything moves the wrong way.

Decoding uses a lookup table over the RGB cube, built once per process (about two seconds) by running the
encoder on polar grids of flow vectors. Flow beyond the colour wheel's saturation radius all
shares one colour per direction, so only its direction can be recovered; re-encoding keeps that colour.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

MAX_FLOW = 25.0  # the encoder's max_flow
ALPHA = 0.1  # the encoder's magnitude companding exponent
LEVELS = 32  # coarse cube cells per RGB channel (bins of 8 values), filled by nearest colour
RADII, ANGLES = 48, 256  # the coarse grid of flow vectors (companded radii in [0, 1])
FINE = 128  # fine cube cells per channel (bins of 2 values), filled from a dense grid
DENSE_RADII, DENSE_ANGLES = 384, 2048


def _encode(flow: np.ndarray) -> np.ndarray:
    from models.media.flow_encoding import encode_flow

    return np.asarray(encode_flow(flow), dtype=np.uint8)


def _raw_from_companded(radius: np.ndarray) -> np.ndarray:
    """Invert u' = (|f| / 25) ^ 0.1 * u / 25, i.e. |f'| = (|f| / 25) ^ 1.1, for the magnitude."""
    return MAX_FLOW * np.power(radius, 1.0 / (1.0 + ALPHA))


def _polar_grid(radii: int, angles: int) -> np.ndarray:
    """(N, 2) raw flow vectors on a polar grid, uniform in the encoder's companded radius, plus a saturated ring."""
    r = np.concatenate([np.linspace(0.0, 1.0, radii), [1.25]])
    a = np.linspace(-np.pi, np.pi, angles, endpoint=False)
    r, a = np.meshgrid(_raw_from_companded(r), a, indexing="ij")
    return np.stack([r * np.cos(a), r * np.sin(a)], axis=-1).reshape(-1, 2).astype(np.float32)


def _cells(rgb: np.ndarray, levels: int) -> np.ndarray:
    q = (np.asarray(rgb, dtype=np.uint8) >> (8 - int(np.log2(levels)))).astype(np.int64)
    return (q[..., 0] * levels + q[..., 1]) * levels + q[..., 2]


@functools.lru_cache(maxsize=1)
def _tables() -> tuple[np.ndarray, np.ndarray]:
    """(FINE^3, 2) flow per colour cell and (FINE^3, 3) the colour of that flow mirrored (u negated).

    Cells the encoder's colours actually fall in get the mean of the dense-grid flows landing there; every other
    cell (colours only compression noise produces) gets the flow whose colour is nearest to a coarse cell's centre.
    """
    # Coarse: nearest grid colour for the centre of every coarse cell.
    grid = _polar_grid(RADII, ANGLES)
    colours = torch.from_numpy(_encode(grid.reshape(1, -1, 1, 2)).reshape(-1, 3).astype(np.float32))
    centres = (np.arange(LEVELS) + 0.5) * (256 / LEVELS)
    cube = torch.from_numpy(np.stack(np.meshgrid(centres, centres, centres, indexing="ij"), -1).reshape(-1, 3))
    nearest = torch.cat([torch.cdist(c, colours).argmin(dim=1) for c in cube.float().split(4096)]).numpy()
    coarse = grid[nearest]
    # Fine: every fine cell inherits its coarse cell's flow, then cells hit by a dense grid get their mean flow.
    q = np.arange(FINE) >> int(np.log2(FINE // LEVELS))
    parent = ((q[:, None, None] * LEVELS + q[None, :, None]) * LEVELS + q[None, None, :]).reshape(-1)
    flow = coarse[parent].astype(np.float64)
    dense = _polar_grid(DENSE_RADII, DENSE_ANGLES)
    cells = _cells(_encode(dense.reshape(1, -1, 1, 2)).reshape(-1, 3), FINE)
    counts = np.bincount(cells, minlength=FINE**3)
    hit = counts > 0
    for axis in range(2):
        sums = np.bincount(cells, weights=dense[:, axis], minlength=FINE**3)
        flow[hit, axis] = sums[hit] / counts[hit]
    flow = flow.astype(np.float32)
    mirrored = flow * np.array([-1.0, 1.0], dtype=np.float32)
    flipped_colours = _encode(mirrored.reshape(1, -1, 1, 2)).reshape(-1, 3)
    return flow, flipped_colours.astype(np.uint8)


def warm_flow_tables() -> None:
    """Build the lookup tables now (e.g. before DataLoader workers fork) instead of at the first flip."""
    _tables()


def decode_flow_colours(rgb: np.ndarray) -> np.ndarray:
    """uint8 (..., 3) flow colours as decoded from a flow video -> float32 (..., 2) flow vectors (u, v)."""
    flow, _ = _tables()
    return flow[_cells(rgb, FINE)]


def flip_flow_colours(rgb: np.ndarray) -> np.ndarray:
    """Mirror colour-coded flow frames (..., H, W, 3) left-right: mirror the picture and negate u (re-encoded)."""
    _, flipped = _tables()
    mirrored = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)[..., ::-1, :])
    return flipped[_cells(mirrored, FINE)]


def flip_raw_flow(flow: np.ndarray) -> np.ndarray:
    """Mirror raw flow fields (..., H, W, 2) left-right: mirror the field and negate the horizontal component."""
    out = np.ascontiguousarray(np.asarray(flow)[..., ::-1, :]).copy()
    out[..., 0] *= -1
    return out
