"""RAFT optical flow (Teed & Deng, ECCV 2020) for motion transfer, loading torchvision's published weights.

Why our own network instead of `torchvision.models.optical_flow`: PyPI's torchvision does not import beside
the project's CPU torch wheel (measured: torchvision 0.28.0 with torch 2.13.0+cpu fails with "operator
torchvision::nms does not exist"), and the torchvision that does import here (0.29.1) needs a 5.5 GB CUDA
torch. The network is small; its module names follow torchvision's state-dict layout, so the published files
(raft_large_C_T_SKHT_V2-ff5fadd5.pth, raft_small_C_T_V2-01064c6d.pth) load strictly, and
tests/media/test_flow_raft.py checks our outputs against torchvision 0.29.1's on recorded reference data.

Panoramas are measured like the OpenCV backends: wrap-padded left and right so motion across the seam is
continuous. Each frame is encoded once (torchvision encodes both images of every pair).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.checkpoints import load_strict, read_state_dict, strip_prefix

MIN_SIDE = 128  # the coarsest correlation level must keep 2 pixels per side (align_corners sampling)
PAIRS_PER_BATCH = 4  # a 512 x 1280 pair holds about 0.6 GB of correlation pyramid


@dataclass(frozen=True)
class RaftConfig:
    """The two published sizes; field names say which torchvision sub-module they shape."""

    encoder_widths: tuple[int, ...]  # stem, layer1, layer2, layer3, output
    context_widths: tuple[int, ...]
    bottleneck: bool  # bottleneck residual blocks (small) or plain ones (large)
    context_batch_norm: bool  # large normalises the context encoder with BatchNorm, small not at all
    radius: int  # correlation look-up window is (2 radius + 1)^2 per level
    corr_widths: tuple[int, ...]
    flow_widths: tuple[int, int]
    motion_width: int
    hidden: int
    gru_kernels: tuple[tuple[int, int], ...]
    head_hidden: int
    convex_upsampling: bool  # learned 8x upsampling mask (large) or bilinear (small)


LARGE = RaftConfig(
    (64, 64, 96, 128, 256), (64, 64, 96, 128, 256), False, True, 4, (256, 192), (128, 64), 128, 128,
    ((1, 5), (5, 1)), 256, True,
)  # fmt: skip
SMALL = RaftConfig(
    (32, 32, 64, 96, 128), (32, 32, 64, 96, 160), True, False, 3, (96,), (64, 32), 82, 96, ((3, 3),), 128, False
)
LEVELS = 4


def _conv(cin: int, cout: int, kernel: int | tuple[int, int], stride: int = 1) -> nn.Conv2d:
    kernel = (kernel, kernel) if isinstance(kernel, int) else kernel
    return nn.Conv2d(cin, cout, kernel, stride, padding=(kernel[0] // 2, kernel[1] // 2))


def _conv_norm_relu(cin: int, cout: int, kernel: int, stride: int = 1, norm: str | None = None, relu: bool = True):
    """conv -> norm -> ReLU as one Sequential: the `.0` / `.1` keys of torchvision's Conv2dNormActivation."""
    layers: list[nn.Module] = [_conv(cin, cout, kernel, stride)]
    if norm == "instance":
        layers.append(nn.InstanceNorm2d(cout))
    elif norm == "batch":
        layers.append(nn.BatchNorm2d(cout))
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class _ResidualBlock(nn.Module):
    def __init__(self, cin: int, cout: int, norm: str | None, stride: int, bottleneck: bool) -> None:
        super().__init__()
        if bottleneck:
            widths, kernels, strides = (cin, cout // 4, cout // 4, cout), (1, 3, 1), (1, stride, 1)
        else:
            widths, kernels, strides = (cin, cout, cout), (3, 3), (stride, 1)
        for i, (kernel, step) in enumerate(zip(kernels, strides, strict=True)):
            setattr(self, f"convnormrelu{i + 1}", _conv_norm_relu(widths[i], widths[i + 1], kernel, step, norm))
        self.convs = len(kernels)
        # identity skip at stride 1 (the published widths never change there), projection when downsampling
        self.downsample = nn.Identity() if stride == 1 else _conv_norm_relu(cin, cout, 1, stride, norm, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for i in range(self.convs):
            y = getattr(self, f"convnormrelu{i + 1}")(y)
        return F.relu(self.downsample(x) + y)


class _Encoder(nn.Module):
    """Image -> features at 1/8 resolution (strides 2, 1, 2, 2)."""

    def __init__(self, widths: tuple[int, ...], norm: str | None, bottleneck: bool) -> None:
        super().__init__()
        self.convnormrelu = _conv_norm_relu(3, widths[0], 7, 2, norm)
        for i, stride in enumerate((1, 2, 2)):
            blocks = [
                _ResidualBlock(widths[i], widths[i + 1], norm, stride, bottleneck),
                _ResidualBlock(widths[i + 1], widths[i + 1], norm, 1, bottleneck),
            ]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.conv = nn.Conv2d(widths[3], widths[4], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.layer3(self.layer2(self.layer1(self.convnormrelu(x)))))


class _MotionEncoder(nn.Module):
    def __init__(self, config: RaftConfig) -> None:
        super().__init__()
        corr_channels = LEVELS * (2 * config.radius + 1) ** 2
        self.convcorr1 = _conv_norm_relu(corr_channels, config.corr_widths[0], 1)
        if len(config.corr_widths) == 2:
            self.convcorr2 = _conv_norm_relu(*config.corr_widths, 3)
        self.convflow1 = _conv_norm_relu(2, config.flow_widths[0], 7)
        self.convflow2 = _conv_norm_relu(*config.flow_widths, 3)
        self.conv = _conv_norm_relu(config.corr_widths[-1] + config.flow_widths[-1], config.motion_width - 2, 3)

    def forward(self, flow: torch.Tensor, corr: torch.Tensor) -> torch.Tensor:
        corr = self.convcorr1(corr)
        if hasattr(self, "convcorr2"):
            corr = self.convcorr2(corr)
        motion = self.convflow2(self.convflow1(flow))
        return torch.cat([self.conv(torch.cat([corr, motion], 1)), flow], 1)


class _ConvGRU(nn.Module):
    def __init__(self, inputs: int, hidden: int, kernel: tuple[int, int]) -> None:
        super().__init__()
        self.convz, self.convr, self.convq = (_conv(hidden + inputs, hidden, kernel) for _ in range(3))

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        hx = torch.cat([h, x], 1)
        z, r = torch.sigmoid(self.convz(hx)), torch.sigmoid(self.convr(hx))
        q = torch.tanh(self.convq(torch.cat([r * h, x], 1)))
        return (1 - z) * h + z * q


class _RecurrentBlock(nn.Module):
    def __init__(self, inputs: int, hidden: int, kernels: tuple[tuple[int, int], ...]) -> None:
        super().__init__()
        self.grus = len(kernels)
        for i, kernel in enumerate(kernels):
            setattr(self, f"convgru{i + 1}", _ConvGRU(inputs, hidden, kernel))

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        for i in range(self.grus):
            h = getattr(self, f"convgru{i + 1}")(h, x)
        return h


class _FlowHead(nn.Module):
    def __init__(self, hidden: int, width: int) -> None:
        super().__init__()
        self.conv1, self.conv2 = _conv(hidden, width, 3), _conv(width, 2, 3)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.conv1(h)))


class _UpdateBlock(nn.Module):
    """The refinement step's three parts (torchvision's `update_block.*` keys); Raft.flow_from_features runs them."""

    def __init__(self, config: RaftConfig) -> None:
        super().__init__()
        context = config.context_widths[-1] - config.hidden
        self.motion_encoder = _MotionEncoder(config)
        self.recurrent_block = _RecurrentBlock(config.motion_width + context, config.hidden, config.gru_kernels)
        self.flow_head = _FlowHead(config.hidden, config.head_hidden)


class _MaskPredictor(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.convrelu = _conv_norm_relu(hidden, 256, 3)
        self.conv = nn.Conv2d(256, 8 * 8 * 9, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return 0.25 * self.conv(self.convrelu(h))  # the published weights were trained with this scale


def _sample(volume: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear look-up of (N, 1, h, w) at absolute pixel coordinates (N, a, b, 2 as x, y), zeros outside."""
    h, w = volume.shape[-2:]
    grid = torch.stack([2 * points[..., 0] / (w - 1) - 1, 2 * points[..., 1] / (h - 1) - 1], -1)
    return F.grid_sample(volume, grid, mode="bilinear", align_corners=True)


def _coords(n: int, h: int, w: int, device: torch.device) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    return torch.stack([xs, ys]).float()[None].expand(n, -1, -1, -1)


class Raft(nn.Module):
    """RAFT with torchvision's state-dict layout. `forward(image1, image2)` takes images in [-1, 1] with sides
    multiple of 8 (at least 128) and returns the final flow (N, 2, H, W) in pixels (x right, y down)."""

    def __init__(self, config: RaftConfig) -> None:
        super().__init__()
        self.config = config
        self.feature_encoder = _Encoder(config.encoder_widths, "instance", config.bottleneck)
        context_norm = "batch" if config.context_batch_norm else None
        self.context_encoder = _Encoder(config.context_widths, context_norm, config.bottleneck)
        self.update_block = _UpdateBlock(config)
        self.mask_predictor = _MaskPredictor(config.hidden) if config.convex_upsampling else None

    def _pyramid(self, fmap1: torch.Tensor, fmap2: torch.Tensor) -> list[torch.Tensor]:
        """All-pairs correlation, pooled over the second image's pixels at LEVELS scales."""
        n, c, h, w = fmap1.shape
        corr = torch.einsum("nci,ncj->nij", fmap1.flatten(2), fmap2.flatten(2)) / math.sqrt(c)
        levels = [corr.reshape(n * h * w, 1, h, w)]
        for _ in range(LEVELS - 1):
            levels.append(F.avg_pool2d(levels[-1], 2, 2))
        return levels

    def _look_up(self, pyramid: list[torch.Tensor], coords: torch.Tensor) -> torch.Tensor:
        """Correlation features around each pixel's current match; window x offsets vary slowest (as published)."""
        n, _, h, w = coords.shape
        r = self.config.radius
        d = torch.arange(-r, r + 1, device=coords.device, dtype=coords.dtype)
        window = torch.stack(torch.meshgrid(d, d, indexing="ij"), -1)  # [a, b] -> (x offset a, y offset b)
        centres = coords.permute(0, 2, 3, 1).reshape(n * h * w, 1, 1, 2)
        features = [_sample(level, centres / 2**i + window).view(n, h, w, -1) for i, level in enumerate(pyramid)]
        return torch.cat(features, -1).permute(0, 3, 1, 2)

    def _upsample(self, flow: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        n, _, fh, fw = flow.shape
        if self.mask_predictor is None:
            return 8 * F.interpolate(flow, size=(8 * fh, 8 * fw), mode="bilinear", align_corners=True)
        # each output pixel is a convex combination of its 3 x 3 coarse neighbours
        mask = torch.softmax(self.mask_predictor(h).view(n, 1, 9, 8, 8, fh, fw), dim=2)
        neighbours = F.unfold(8 * flow, 3, padding=1).view(n, 2, 9, 1, 1, fh, fw)
        fine = (mask * neighbours).sum(2)  # (n, 2, 8, 8, fh, fw)
        return fine.permute(0, 1, 4, 2, 5, 3).reshape(n, 2, 8 * fh, 8 * fw)

    def flow_from_features(
        self, fmap1: torch.Tensor, fmap2: torch.Tensor, context: torch.Tensor, updates: int = 12
    ) -> torch.Tensor:
        """Iterative refinement from encoded first/second images and the first image's context features."""
        pyramid = self._pyramid(fmap1, fmap2)
        h, ctx = torch.split(context, [self.config.hidden, context.shape[1] - self.config.hidden], 1)
        h, ctx = torch.tanh(h), F.relu(ctx)
        n, _, fh, fw = fmap1.shape
        coords0 = _coords(n, fh, fw, fmap1.device)
        coords1 = coords0.clone()
        block = self.update_block
        for _ in range(updates):
            flow = coords1 - coords0
            motion = block.motion_encoder(flow, self._look_up(pyramid, coords1))
            h = block.recurrent_block(h, torch.cat([ctx, motion], 1))
            coords1 = coords1 + block.flow_head(h)
        return self._upsample(coords1 - coords0, h)

    def forward(self, image1: torch.Tensor, image2: torch.Tensor, updates: int = 12) -> torch.Tensor:
        fmap1, fmap2 = self.feature_encoder(torch.cat([image1, image2])).chunk(2)
        return self.flow_from_features(fmap1, fmap2, self.context_encoder(image1), updates)


def build_raft(state: dict[str, torch.Tensor], source: str | Path = "state dict") -> Raft:
    """The RAFT size the weights describe (the convex-upsampling mask exists only in raft_large), loaded
    strictly: any missing, unexpected or mis-shaped key is a CheckpointError naming them."""
    model = Raft(LARGE if any(k.startswith("mask_predictor.") for k in state) else SMALL)
    load_strict(model, state, source, "torchvision RAFT (raft_large or raft_small)")
    return model.eval()


@lru_cache(maxsize=2)
def load_raft(path: str | Path, device: str = "cpu") -> Raft:
    """RAFT from a local torchvision checkpoint (.pth/.pt or .safetensors), in fp32 on `device`; kept loaded,
    so a worker reads the file once."""
    return build_raft(strip_prefix(read_state_dict(path), "module."), path).to(device)


def _working_size(h: int, w: int) -> tuple[int, int]:
    """Sides RAFT can take: multiples of 8, at least MIN_SIDE, keeping the aspect."""
    scale = max(1.0, MIN_SIDE / min(h, w))
    return (8 * math.ceil(h * scale / 8), 8 * math.ceil(w * scale / 8))


@torch.inference_mode()
def raft_flow(
    model: Raft, frames: np.ndarray, updates: int = 12, progress: Callable[[int, int], None] | None = None
) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB panoramas -> (N - 1, H, W, 2) float32 flow in pixels between neighbours."""
    device = next(model.parameters()).device
    n, h, w, _ = frames.shape
    wh, ww = _working_size(h, w)
    pad = 8 * math.ceil(ww / 64)  # an eighth of the width, kept a multiple of 8
    flows = []
    for start in range(0, n - 1, PAIRS_PER_BATCH):
        chunk = torch.from_numpy(frames[start : start + PAIRS_PER_BATCH + 1]).to(device)
        images = chunk.permute(0, 3, 1, 2).float() / 127.5 - 1
        if (wh, ww) != (h, w):
            images = F.interpolate(images, size=(wh, ww), mode="bilinear", align_corners=False)
        images = F.pad(images, (pad, pad, 0, 0), mode="circular")  # seam-continuous, as in flow_extract
        fmaps = model.feature_encoder(images)  # every frame once: it is the second image of one pair, first of next
        flow = model.flow_from_features(fmaps[:-1], fmaps[1:], model.context_encoder(images[:-1]), updates)
        flow = flow[..., pad:-pad]
        if (wh, ww) != (h, w):  # back to the clip's size; vectors are pixels, so they scale with it
            flow = F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False)
            flow = flow * torch.tensor([w / ww, h / wh], device=device).view(1, 2, 1, 1)
        flows.append(flow.permute(0, 2, 3, 1).float().cpu().numpy())
        if progress is not None:
            progress(start + len(flow), n - 1)
    return np.concatenate(flows)
