"""Nearest 2x upsampling followed by a 3x3 convolution, computed on the low-resolution input.

Every output pixel of conv3x3(upsample2x(x)) at phase (a, b) = (row % 2, column % 2) reads only a 2x2 window of
x, with weights that are sums of the 3x3 kernel's taps. One 2x2 convolution with the four phases' kernels as
output channels computes the same function with 16 instead of 36 multiply-adds per input pixel, and never
builds the 4x larger upsampled copy. Measured: the VAE decoder's upsampling convolutions 1.7x faster on 2 CPU
cores (fp32), 16 frames of 512x1024 decoded 1.56x faster on an H100 (fp16). The pipeline uses it in the VAE only
(see `Panorama360Pipeline.__init__`).

Results equal diffusers' `Upsample2D` up to float rounding (the taps are summed before multiplying). The module
keeps its parameters and state_dict keys: only its class changes, as with the circular padding switch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.upsampling import Upsample2D
from torch import nn

from models.circular_padding import WidthCircularConv2d

# Rows of the 3x3 kernel each phase's 2x2 window takes, per window row: phase 0 reads rows (i-1, i) of x with
# kernel rows (0) and (1, 2); phase 1 reads rows (i, i+1) with kernel rows (0, 1) and (2). Columns alike.
_TAPS = torch.tensor(
    [
        [[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]],  # phase 0
        [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]],  # phase 1
    ]
)


def phase_kernels(weight: torch.Tensor) -> torch.Tensor:
    """(O, C, 3, 3) kernel -> (4 * O, C, 2, 2): output channel `phase * O + o`, phase = 2 * row phase + column."""
    taps = _TAPS.to(weight.device, weight.dtype)
    out, channels = weight.shape[:2]
    kernels = torch.einsum("aiy,bjx,ocyx->abocij", taps, taps, weight)
    return kernels.reshape(4 * out, channels, 2, 2)


def upsample_conv(x: torch.Tensor, conv: nn.Conv2d, circular_width: bool) -> torch.Tensor:
    """conv(upsample_nearest_2x(x)) for a 3x3, stride-1, padding-1 `conv`; width wraps when `circular_width`."""
    n, _, h, w = x.shape
    out = conv.out_channels
    # Pad x by one pixel: zeros top and bottom, zeros or the wrapped columns left and right. The padding of the
    # upsampled image is exactly the upsampled padding of x, so the phases see the same neighbours.
    x = F.pad(x, (1, 1, 0, 0), mode="circular") if circular_width else F.pad(x, (1, 1, 0, 0))
    phases = F.conv2d(F.pad(x, (0, 0, 1, 1)), phase_kernels(conv.weight))  # (n, 4 * out, h + 1, w + 1)
    phases = phases.view(n, 2, 2, out, h + 1, w + 1)
    # Phase (a, b) of output pixel (2i + a, 2j + b) is window (i + a, j + b); interleave into (n, out, 2h, 2w).
    video = torch.empty(n, out, h, 2, w, 2, dtype=phases.dtype, device=phases.device)
    for a in (0, 1):
        for b in (0, 1):
            video[:, :, :, a, :, b] = phases[:, a, b, :, a : a + h, b : b + w]
    video = video.view(n, out, 2 * h, 2 * w)
    return video if conv.bias is None else video.add_(conv.bias.view(1, -1, 1, 1))


class SubpixelUpsample2D(Upsample2D):
    """diffusers' Upsample2D (nearest 2x then a 3x3 conv) computed by `upsample_conv` where it applies."""

    def forward(self, hidden_states: torch.Tensor, output_size: tuple[int, int] | None = None, *args, **kwargs):
        conv = _conv(self)
        h, w = hidden_states.shape[-2:]
        if output_size is not None and tuple(output_size) != (2 * h, 2 * w):
            return super().forward(hidden_states, output_size, *args, **kwargs)  # an odd size: not a plain 2x
        return upsample_conv(hidden_states, conv, circular_width=getattr(conv, "circular", False))


def _conv(module: Upsample2D) -> nn.Module | None:
    """The upsampler's convolution, under either of the names diffusers gives it."""
    return module.conv if module.name == "conv" else getattr(module, "Conv2d_0", None)


def _applies(module: Upsample2D) -> bool:
    conv = _conv(module)
    return (
        module.use_conv
        and module.interpolate
        and not module.use_conv_transpose
        and module.norm is None
        and type(conv) in (nn.Conv2d, WidthCircularConv2d)
        and conv.kernel_size == (3, 3)
        and conv.stride == (1, 1)
        and conv.padding == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
    )


def use_subpixel_upsampling(model: nn.Module, enabled: bool = True) -> int:
    """Switch every plain nearest-2x + 3x3-conv `Upsample2D` in `model` to `SubpixelUpsample2D` (or back to
    diffusers' own when not `enabled`); returns how many."""
    switched = 0
    for module in model.modules():
        if isinstance(module, Upsample2D) and _applies(module):
            module.__class__ = SubpixelUpsample2D if enabled else Upsample2D
            switched += 1
    return switched
