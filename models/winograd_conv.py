"""3x3 convolutions as Winograd F(4x4, 3x3) on CPU: 36 multiplies per 4x4 output tile and channel pair, not 144.

oneDNN offers no Winograd algorithm on AVX2 CPUs, and the SD UNet's and VAE's 3x3 convolutions already run near
the fp32 peak there (110-150 GFLOP/s on 2 cores): fewer multiplies is what is left to win. The transforms are C
(`models/csrc/winograd_f43.c`, built by `models.native`); the 36 products are one batched matrix product (MKL).
Written in eager PyTorch the same algorithm was 1.1-3x slower than oneDNN (its transforms are memory-bound
passes); fused in C it is faster wherever a call covers enough output pixels (numbers in `MIN_OUTPUT_PIXELS`).

Results differ from the direct convolution by float rounding only (about 1e-5 relative: the transforms add and
subtract values up to 100x larger than the result). Inference only: a call that needs gradients stays on torch.
"""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass

import torch

from models import native
from models.small_map_conv import output_size

# Output pixels per call (batch x height x width) and channels from which F(4x4, 3x3) beats oneDNN. Measured on 2
# cores (AMD EPYC, AVX2), median of 5, oneDNN -> this path: 1 x 128->128 at 128x256 78 -> 41 ms, 1 x 512->256 at
# 64x128 132 -> 55 ms, 1 x 512->512 at 32x64 72 -> 40 ms, 16 x 320->320 at 16x32 149 -> 67 ms, 16 x 1280->640 at
# 8x16 231 -> 116 ms, 16 x 1280->1280 at 4x8 177 -> 127 ms; a tie at 1 x 512->512 at 16x32 (512 pixels); slower
# where a side has few channels (128->3: 12 -> 14 ms, 4->512: 0.4 -> 1.1 ms): there the transforms of the wide side
# cost more than the few products save.
MIN_OUTPUT_PIXELS = 512
MIN_CHANNELS = 16
# Bytes per transformed buffer (filters, input tiles, products): larger convolutions are done in chunks of tile
# rows and output channels. Below glibc's largest mmap threshold (32 MB), so freed chunks are reused from the
# heap instead of being mapped and page-faulted afresh on every call.
CHUNK_BYTES = 24 * 2**20
TILE = 4  # output pixels per tile side
POSITIONS = 36  # (TILE + 2) ** 2 transformed positions
SYMBOLS = ("winograd_filter", "winograd_input", "winograd_output")  # a library without all of them is not used


def _library() -> ctypes.CDLL | None:
    lib = native.load("winograd_f43", SYMBOLS)
    if lib is not None and not hasattr(lib, "_dvd360_typed"):
        i, p = ctypes.c_int, ctypes.c_void_p
        lib.winograd_filter.argtypes = [p, p, i, i, i, i]
        lib.winograd_input.argtypes = [p, p, i, i, i, i, i, i, i, i, i, i, i]
        lib.winograd_output.argtypes = [p, p, p, i, i, i, i, i, i, i, i, i, i]
        lib.winograd_input.restype = lib.winograd_output.restype = i  # 0, or -1: a work buffer was not allocated
        lib._dvd360_typed = True
    return lib


def winograd_applies(x: torch.Tensor, weight: torch.Tensor, stride, padding, dilation, groups: int) -> bool:
    """Whether `F.conv2d(x, weight, bias, stride, padding, dilation, groups)` runs faster here than on oneDNN."""
    if x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32 or x.dim() != 4:
        return False
    if tuple(weight.shape[-2:]) != (3, 3) or tuple(stride) != (1, 1) or tuple(dilation) != (1, 1) or groups != 1:
        return False
    if any(p > 1 for p in padding) or torch.compiler.is_compiling():
        return False  # a graph being traced keeps torch's op (ctypes calls would break it)
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return False
    n, channels, h, w = x.shape
    pixels = n * output_size(h, 3, 1, padding[0]) * output_size(w, 3, 1, padding[1])
    if pixels < MIN_OUTPUT_PIXELS or min(channels, weight.shape[0]) < MIN_CHANNELS:
        return False
    return _library() is not None


@dataclass(frozen=True)
class ChunkPlan:
    k_chunk: int  # output channels per chunk
    row_chunk: int  # tile rows (over the batch) per chunk
    k_ranges: list[tuple[int, int]]
    row_ranges: list[tuple[int, int]]
    filters_outer: bool  # loop over output-channel chunks outside, tile-row chunks inside


def plan_chunks(channels: int, out_channels: int, rows: int, tiles_w: int) -> ChunkPlan:
    """Chunks whose transformed buffers each fit `CHUNK_BYTES`, and the loop order that redoes less work."""
    floats = CHUNK_BYTES // 4
    k_chunk = min(out_channels, max(8, floats // (POSITIONS * channels) // 8 * 8))
    row_chunk = min(rows, max(1, floats // (POSITIONS * tiles_w * max(channels, k_chunk))))
    k_ranges = [(k, min(k + k_chunk, out_channels)) for k in range(0, out_channels, k_chunk)]
    row_ranges = [(r, min(r + row_chunk, rows)) for r in range(0, rows, row_chunk)]
    # With both split, the inner loop's operand is transformed again for every outer step: keep the cheaper inside.
    both_split = len(k_ranges) > 1 and len(row_ranges) > 1
    redo_inputs = (len(k_ranges) - 1) * channels * rows * tiles_w if both_split else 0
    redo_filters = (len(row_ranges) - 1) * out_channels * channels if both_split else 0
    return ChunkPlan(k_chunk, row_chunk, k_ranges, row_ranges, filters_outer=redo_inputs <= redo_filters)


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def winograd_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    padding: tuple[int, int],
    circular: bool = False,
) -> torch.Tensor:
    """`F.conv2d(x, weight, bias, padding=padding)` for 3x3 fp32 kernels on CPU; with `circular`, the width wraps
    (as `F.conv2d(F.pad(x, (pw, pw, 0, 0), mode="circular"), weight, bias, padding=(ph, 0))`)."""
    lib = _library()
    if lib is None:
        raise RuntimeError("the Winograd kernels are not available (see models.native)")
    x, weight = x.contiguous(), weight.contiguous()
    bias = None if bias is None else bias.contiguous()
    n, channels, h, w = x.shape
    out_channels = weight.shape[0]
    pad_h, pad_w = padding
    out_h, out_w = output_size(h, 3, 1, pad_h), output_size(w, 3, 1, pad_w)
    tiles_h, tiles_w = math.ceil(out_h / TILE), math.ceil(out_w / TILE)
    rows = n * tiles_h  # tile rows over the whole batch
    threads = torch.get_num_threads()

    plan = plan_chunks(channels, out_channels, rows, tiles_w)
    outer, inner = (plan.k_ranges, plan.row_ranges) if plan.filters_outer else (plan.row_ranges, plan.k_ranges)
    y = torch.empty(n, out_channels, out_h, out_w)
    u_buf = torch.empty(POSITIONS * plan.k_chunk * channels)
    v_buf = torch.empty(POSITIONS * channels * plan.row_chunk * tiles_w)
    m_buf = torch.empty(POSITIONS * plan.k_chunk * plan.row_chunk * tiles_w)
    u_done = v_done = None
    for a in outer:
        for b in inner:
            (k0, k1), (r0, r1) = (a, b) if plan.filters_outer else (b, a)
            kn, tiles = k1 - k0, (r1 - r0) * tiles_w
            u = u_buf[: POSITIONS * kn * channels].view(POSITIONS, kn, channels)
            v = v_buf[: POSITIONS * channels * tiles].view(POSITIONS, channels, tiles)
            m = m_buf[: POSITIONS * kn * tiles].view(POSITIONS, kn, tiles)
            if u_done != (k0, k1):
                lib.winograd_filter(_ptr(weight), _ptr(u), channels, k0, k1, threads)
                u_done = (k0, k1)
            if v_done != (r0, r1):
                _check(
                    lib.winograd_input(
                        _ptr(x),
                        _ptr(v),
                        channels,
                        h,
                        w,
                        pad_h,
                        pad_w,
                        int(circular),
                        tiles_h,
                        tiles_w,
                        r0,
                        r1,
                        threads,
                    )
                )
                v_done = (r0, r1)
            torch.bmm(u, v, out=m)
            _check(
                lib.winograd_output(
                    _ptr(m),
                    _ptr(bias),
                    _ptr(y),
                    out_channels,
                    out_h,
                    out_w,
                    tiles_h,
                    tiles_w,
                    r0,
                    r1,
                    k0,
                    k1,
                    threads,
                )
            )
    return y


def _check(status: int) -> None:
    if status:
        raise MemoryError("the Winograd transforms could not allocate their per-thread rows")
