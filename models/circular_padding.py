"""Width-only circular padding for Conv2d layers: the panorama wraps left-right, not top-bottom.

torch's `padding_mode="circular"` also wraps top to bottom (measured up to 2.98 off on a tiny VAE), which
is wrong for equirectangular images: the poles do not touch. Here width pads circularly, height with zeros.

A padded conv becomes a `WidthCircularConv2d` once (its parameters and state_dict keys unchanged) and is then
switched by its `circular` attribute only: swapping classes or hooks on every switch would invalidate
torch.compile's guards, whereas a switched attribute costs one extra graph, compiled once.

Every padded conv of the UNet and the VAE passes through this class, so it is also where the CPU's faster
algorithms are chosen: a conv over a tiny map as one matrix product (`models.small_map_conv`), a 3x3 conv over
larger maps as Winograd F(4x4, 3x3) (`models.winograd_conv`), both measured faster there than oneDNN.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from models.small_map_conv import conv_as_matmul, conv_as_matmul_applies
from models.winograd_conv import winograd_applies, winograd_conv2d


class WidthCircularConv2d(nn.Conv2d):
    circular: bool = False

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        pad_h, pad_w = padding = self.padding  # type: ignore[misc]
        circular = bool(self.circular and pad_w)
        small = conv_as_matmul_applies(input, weight, self.stride, padding, self.dilation, self.groups)
        if not small and winograd_applies(input, weight, self.stride, padding, self.dilation, self.groups):
            return winograd_conv2d(input, weight, bias, padding, circular)  # wraps the width itself: no copy
        if circular:
            # One copy for the width wrap; the convolution itself zero-pads the height.
            input = F.pad(input, (pad_w, pad_w, 0, 0), mode="circular")
            padding = (pad_h, 0)
        if small:
            return conv_as_matmul(input, weight, bias, self.stride, padding)
        return F.conv2d(input, weight, bias, self.stride, padding, self.dilation, self.groups)


def _padded_convs(module: nn.Module) -> Iterator[WidthCircularConv2d]:
    for m in module.modules():
        if isinstance(m, nn.Conv2d) and isinstance(m.padding, tuple) and any(m.padding):
            # Only plain convs are converted: a subclass's own forward would be lost.
            if type(m) not in (nn.Conv2d, WidthCircularConv2d) or m.padding_mode != "zeros":
                raise TypeError(f"cannot make {m!r} ({type(m).__name__}) width-circular")
            m.__class__ = WidthCircularConv2d
            yield m


def set_width_circular_padding(module: nn.Module, enabled: bool) -> None:
    """Switch every padded Conv2d inside `module` between zero padding and width-circular padding."""
    for conv in _padded_convs(module):
        conv.circular = enabled


@contextmanager
def width_circular_padding(module: nn.Module, enabled: bool = True) -> Iterator[None]:
    """Width-circular padding inside the block, zero padding again after it (also on errors)."""
    set_width_circular_padding(module, enabled)
    try:
        yield
    finally:
        set_width_circular_padding(module, False)
