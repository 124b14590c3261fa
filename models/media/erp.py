"""Equirectangular (ERP) geometry, vectorised over frames: perspective views and latitude weights."""

from __future__ import annotations

import numpy as np


def _rotation(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    yaw, pitch = np.radians(yaw_deg), np.radians(pitch_deg)
    about_x = np.array([[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)], [0, np.sin(pitch), np.cos(pitch)]])
    about_y = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    return about_y @ about_x


def perspective_from_erp(
    erp: np.ndarray, yaw_deg: float, pitch_deg: float, fov_deg: float, out_h: int, out_w: int
) -> np.ndarray:
    """A pinhole view of (..., H, W, C) panoramas (any leading frame axes), bilinear, wrapping across the seam.

    Yaw 0 looks at the ERP centre column, positive yaw turns right; positive pitch looks up.
    """
    erp = np.asarray(erp)
    h, w = erp.shape[-3:-1]
    focal = 0.5 * out_w / np.tan(np.radians(fov_deg) / 2)
    x, y = np.meshgrid(np.arange(out_w) - (out_w - 1) / 2, np.arange(out_h) - (out_h - 1) / 2)
    rays = np.stack([x, -y, np.full_like(x, focal)], axis=-1)
    rays = rays / np.linalg.norm(rays, axis=-1, keepdims=True) @ _rotation(yaw_deg, pitch_deg).T
    lon = np.arctan2(rays[..., 0], rays[..., 2])
    lat = np.arcsin(np.clip(rays[..., 1], -1, 1))
    # pixel centres: column c covers longitude ((c + 0.5) / w - 0.5) * 2 pi
    col = (lon / (2 * np.pi) + 0.5) * w - 0.5
    row = np.clip((0.5 - lat / np.pi) * h - 0.5, 0, h - 1)
    c0, r0 = np.floor(col).astype(int), np.floor(row).astype(int)
    fc, fr = (col - c0)[..., None], (row - r0)[..., None]
    c0, c1 = c0 % w, (c0 + 1) % w
    r1 = np.minimum(r0 + 1, h - 1)
    data = erp.astype(np.float32)
    top = data[..., r0, c0, :] * (1 - fc) + data[..., r0, c1, :] * fc
    bottom = data[..., r1, c0, :] * (1 - fc) + data[..., r1, c1, :] * fc
    view = top * (1 - fr) + bottom * fr
    return np.clip(np.rint(view), 0, 255).astype(erp.dtype) if erp.dtype == np.uint8 else view.astype(erp.dtype)


def latitude_weights(h: int) -> np.ndarray:
    """|cos(latitude)| at the centre of each of h rows: the latitude-aware loss weights (FACTS.md, Training)."""
    i = np.arange(h)
    return np.abs(np.cos((2 * i - h + 1) / (2 * h) * np.pi))
