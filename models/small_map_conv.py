"""Convolutions over tiny feature maps as one matrix product, on CPU.

oneDNN's direct convolution cannot fill its register tiles when a map has only a handful of pixels: at the SD
UNet's deepest level (1280 channels, 2x4 pixels for a 128x256 video) it ran at 45-60 GFLOP/s against ~130 on
larger maps. Unfolding the patches (a few MB at that size) and multiplying them by the weight matrix runs at
85-100 GFLOP/s there. Measured on 2 CPU cores (AMD EPYC, AVX2, fp32, 16 frames): 1280->1280 at 2x4 69 -> 40 ms,
2560->1280 at 2x4 170 -> 89 ms; at 4x8 both 186/174 ms, and at 8x16 the product is 1.4x slower, hence the limit.
On GPUs cuDNN chooses its own algorithm: this path is CPU only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Output pixels per image up to which the product wins (2x4 and 4x4 maps; 4x8 is a tie, left to oneDNN).
SMALL_MAP_PIXELS = 16


def output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def conv_as_matmul_applies(
    x: torch.Tensor, weight: torch.Tensor, stride: tuple[int, int], padding: tuple[int, int], dilation, groups: int
) -> bool:
    if x.device.type != "cpu" or x.dim() != 4 or groups != 1 or tuple(dilation) != (1, 1):
        return False
    h = output_size(x.shape[-2], weight.shape[-2], stride[0], padding[0])
    w = output_size(x.shape[-1], weight.shape[-1], stride[1], padding[1])
    return h * w <= SMALL_MAP_PIXELS


def conv_as_matmul(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: tuple[int, int],
    padding: tuple[int, int],
) -> torch.Tensor:
    """`F.conv2d(x, weight, bias, stride, padding)` (groups 1, no dilation) as unfold + one matrix product."""
    n, channels, h, w = x.shape
    out, _, kh, kw = weight.shape
    out_h = output_size(h, kh, stride[0], padding[0])
    out_w = output_size(w, kw, stride[1], padding[1])
    patches = F.unfold(x, (kh, kw), padding=padding, stride=stride)  # (n, channels * kh * kw, out_h * out_w)
    # Every image's patches side by side, so the weights are read once for the whole batch.
    patches = patches.transpose(0, 1).reshape(channels * kh * kw, n * out_h * out_w)
    matrix = weight.reshape(out, channels * kh * kw)
    y = torch.mm(matrix, patches) if bias is None else torch.addmm(bias.unsqueeze(1), matrix, patches)
    return y.view(out, n, out_h, out_w).transpose(0, 1).contiguous()
