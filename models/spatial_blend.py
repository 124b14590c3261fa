"""Spatial windows on tensors: a window's crop of the latents and of the 360-Adapter's features (columns wrapping
across the left-right seam), and the blend of the windows' noise predictions. Where the windows go:
`models.spatial_windows`."""

from __future__ import annotations

from collections.abc import Callable

import torch

from models.spatial_windows import Region


def crop(x: torch.Tensor, region: Region, scale: int = 1, column_shift: int = 0) -> torch.Tensor:
    """`region` of (..., h, w) `x` whose maps are `scale` times smaller than the latents the region was laid out
    on, and whose columns are `column_shift` latent pixels behind theirs (features that were not rolled with the
    latents). Columns wrap. Regions sit on multiples of 8 latent pixels, so the crop is exact at every scale up to
    8 unless the shift is not a multiple of the scale; then its columns start at the nearest map pixel."""
    top = region.rows.start // scale
    x = x[..., top : top + region.rows.length // scale, :]
    width, length = x.shape[-1], region.columns.length // scale
    start = round((region.columns.start - column_shift) / scale) % width
    if start + length <= width:
        return x[..., start : start + length]
    return torch.cat([x[..., start:], x[..., : start + length - width]], dim=-1)


def crop_features(
    features: list[torch.Tensor], region: Region, latent_width: int, column_shift: int = 0
) -> list[torch.Tensor]:
    """Each adapter feature map (frames, C, h_i, w_i) cropped to `region` of the latents."""
    return [crop(f, region, latent_width // f.shape[-1], column_shift) for f in features]


def blend_regions(
    regions: list[Region], predict: Callable[[Region | None], torch.Tensor], latents: torch.Tensor
) -> torch.Tensor:
    """The noise prediction for (B, C, F, h, w) `latents`: `predict(region)` per region (a (B, C, F, rows,
    columns) prediction for the region's crop), weighted by the regions' blend weights, which sum to 1 at every
    latent pixel. A single region covering the latents in order calls `predict(None)`: the whole picture in one
    UNet call, bit for bit the path without windows."""
    height, width = latents.shape[-2:]
    if len(regions) == 1 and regions[0].covers(height, width):
        return predict(None)
    total = torch.zeros_like(latents)
    for region in regions:
        weight = torch.outer(torch.tensor(region.rows.weights), torch.tensor(region.columns.weights))
        rows = slice(region.rows.start, region.rows.start + region.rows.length)
        columns = torch.tensor(region.columns.indices(width), device=latents.device)
        prediction = predict(region) * weight.to(latents.device, latents.dtype)
        total[..., rows, :].index_add_(total.ndim - 1, columns, prediction)
    return total
