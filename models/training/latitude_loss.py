"""The latitude-aware loss of 360DVD: an MSE whose latent rows are weighted by how much sphere they cover.

Row i of h rows of an equirectangular latent sits at latitude ((2i - h + 1) / (2h)) * pi; its weight is the
absolute cosine of that latitude, so the stretched polar rows count less than the equator.
"""

from __future__ import annotations

import torch

from models.media import erp


def latitude_weights(
    h: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """(h,) weights |cos(((2i - h + 1) / (2h)) * pi)| for rows i = 0 .. h - 1, computed for all rows at once."""
    if h < 1:
        raise ValueError(f"need at least one row, got h={h}")
    return torch.from_numpy(erp.latitude_weights(h)).to(device=device, dtype=dtype)


def latitude_weighted_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean of w[row] * (pred - target)^2 over every element; rows are dimension -2 (..., h, w)."""
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    weights = latitude_weights(pred.shape[-2], device=pred.device, dtype=torch.float32)[:, None]
    return (weights * (pred.float() - target.float()).square()).mean()
