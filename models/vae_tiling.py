"""Tiled VAE decoding that keeps the panorama's left-right wrap: bounded decoder memory at any output size.

Tiles overlap and are feathered in pixel space. Along the width (when circular) the tile grid wraps: the last
tile overlaps the first across the seam and the blend crosses it, so the wrap is no more a seam than any tile
border. A tile row as wide as the latents is decoded whole with width-circular padding (exact in width); a
narrower tile is decoded with zero padding, since wrapping a part of the panorama onto itself would be wrong.
The height never wraps (the poles do not touch): ordinary overlapping tiles, zero-padded at the top and bottom.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from diffusers import AutoencoderKL

from models.circular_padding import width_circular_padding

SCALE = 8  # pixels per latent pixel of an SD VAE (three 2x upsamplings)


def check_tiling(tile: int, overlap: int) -> None:
    if tile < 1:
        raise ValueError(f"VAE tile must be at least 1 latent pixel, got {tile}")
    if not 1 <= overlap < tile:
        raise ValueError(
            f"VAE tile overlap must be at least 1 and smaller than the tile ({tile}), got {overlap}: "
            "the blend needs an overlap and tiles must advance"
        )


@dataclass(frozen=True)
class VaeTiling:
    """Tile size and overlap in latent pixels. The defaults are diffusers' own tiling of SD-1.5's VAE (512 px
    tiles, the size SD-1.5 renders at, so each tile normalises over a picture-sized area; a quarter overlap, so
    128 px of feathering hide what neighbours see differently). At the default 512x1024 output a tile row spans
    the full height and three tiles go round."""

    tile: int = 64
    overlap: int = 16

    def __post_init__(self) -> None:
        check_tiling(self.tile, self.overlap)


def automatic_tiling(latent_height: int, latent_width: int) -> VaeTiling | None:
    """How a decode goes unless told: whole up to 512 x 1024 output (one row of default tiles), in default tiles
    above, so the decoder's activations stay those of 512-pixel tiles at any output size (2048 x 4096 included)."""
    tiling = VaeTiling()
    return tiling if latent_height > tiling.tile or latent_width > 2 * tiling.tile else None


def _tile_starts(size: int, tile: int, overlap: int, wrap: bool) -> list[int]:
    """Where the tiles along one axis start, evenly spaced and at most `tile - overlap` apart. Wrapping, they
    go all the way round (the last overlaps the first); otherwise the last ends at `size`."""
    if tile >= size:
        return [0]
    stride = tile - overlap
    if wrap:
        count = math.ceil(size / stride)
        return [k * size // count for k in range(count)]
    gaps = math.ceil((size - tile) / stride)
    return [k * (size - tile) // gaps for k in range(gaps + 1)]


def _feathers(starts: list[int], length: int, size: int, wrap: bool) -> list[torch.Tensor]:
    """Per tile, its blend weight along one axis in pixels: linear ramps across each overlap with a neighbour
    (so two overlapping ramps sum to 1), 1 elsewhere, including edges with no neighbour (the image's border)."""
    position = torch.arange(length * SCALE) + 0.5
    last = len(starts) - 1
    weights = []
    for i, start in enumerate(starts):
        weight = torch.ones(length * SCALE)
        if i > 0 or (wrap and last > 0):
            previous_end = starts[i - 1] + length - (size if i == 0 else 0)
            weight = torch.minimum(weight, position / ((previous_end - start) * SCALE))
        if i < last or (wrap and last > 0):
            next_start = starts[i + 1] if i < last else starts[0] + size
            weight = torch.minimum(weight, (length * SCALE - position) / ((start + length - next_start) * SCALE))
        weights.append(weight)
    return weights


def _indices(starts: list[int], length: int, size: int, scale: int) -> list[torch.Tensor]:
    """Per tile, the indices it covers along one axis at `scale` (taken modulo the size: a tile may wrap)."""
    return [(start * scale + torch.arange(length * scale)) % (size * scale) for start in starts]


@torch.no_grad()
def decode_tiled(vae: AutoencoderKL, latents: torch.Tensor, tile: int, overlap: int, circular: bool) -> torch.Tensor:
    """(n, C, h, w) latents (already divided by the scaling factor) -> (n, 3, 8h, 8w) float32 pictures, as
    `vae.decode(latents).sample` up to tile effects, decoding one tile at a time into the output."""
    check_tiling(tile, overlap)
    n, _, h, w = latents.shape
    rows, columns = _tile_starts(h, tile, overlap, wrap=False), _tile_starts(w, tile, overlap, wrap=circular)
    row_length, column_length = min(tile, h), min(tile, w)
    device = latents.device
    row_weights = [f.to(device) for f in _feathers(rows, row_length, h, wrap=False)]
    column_weights = [f.to(device) for f in _feathers(columns, column_length, w, wrap=circular)]
    latent_columns = [i.to(device) for i in _indices(columns, column_length, w, 1)]
    pixel_columns = [i.to(device) for i in _indices(columns, column_length, w, SCALE)]

    # Weighted sums and the sum of weights (the same for every frame and channel): where three tiles meet
    # (uneven spacing) the ramps no longer sum to 1, dividing by the weights keeps the blend an average.
    out = torch.zeros(n, 3, h * SCALE, w * SCALE, device=device)
    total = torch.zeros(h * SCALE, w * SCALE, device=device)
    full_width = len(columns) == 1
    for row, row_weight in zip(rows, row_weights, strict=True):
        band = latents[:, :, row : row + row_length]
        pixel_rows = slice(row * SCALE, (row + row_length) * SCALE)
        for latent_cols, pixel_cols, column_weight in zip(latent_columns, pixel_columns, column_weights, strict=True):
            # only a tile that is the whole width may wrap onto itself
            with width_circular_padding(vae, circular and full_width):
                pictures = vae.decode(band.index_select(3, latent_cols)).sample
            weight = row_weight[:, None] * column_weight[None, :]
            out[:, :, pixel_rows].index_add_(3, pixel_cols, pictures.float() * weight)
            total[pixel_rows].index_add_(1, pixel_cols, weight)
    return out.div_(total)
