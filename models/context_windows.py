"""Temporal context windows: any number of frames through a motion module that sees a few at a time.

Each denoising step runs the UNet once per window of about `length` frames, so a step's memory is that of one
window whatever the video's length, and its time grows linearly with the length. Spatial layers see every
frame (each frame is in one window, or in two where windows overlap, blended with FreeNoise's pyramid
weights); the 360 techniques apply to every window as to a short video. Window boundaries move by `shift`
frames every step, the temporal analogue of the latent rotation that moves the width seam, so no frame
boundary stays a window boundary through the sampling; the last step uses the unshifted layout, whose
boundaries sit at multiples of the stride (where `window_seam_ratio` looks). With `loop`, windows wrap around
the end, so the last frame is denoised beside the first: the temporal analogue of width-circular padding.

Why not diffusers' FreeNoise block swap (`AnimateDiffFreeNoiseMixin.enable_free_noise`): it windows the motion
attention inside one UNet call over all frames, so activations grow with the length (128 frames at 512 x 1024
would not fit an 80 GB GPU), AnimateDiff v1's joint GroupNorm statistics would span the whole video instead of
the 16 frames the model was trained on, and its windows never wrap around for loops. Reused from diffusers:
FreeNoise's noise initialisation ("shuffle_context") and its pyramid weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

import torch
from diffusers.models.attention import FreeNoiseTransformerBlock
from diffusers.pipelines.free_noise_utils import AnimateDiffFreeNoiseMixin

CONTEXT_LENGTH = 16  # the frames AnimateDiff's motion modules were trained on

Window = list[int]


@dataclass(frozen=True)
class ContextWindows:
    """How a video longer than the motion module's reach is cut into windows.

    `length`: frames per window; `stride`: frames from one window's start to the next (`length`: windows tile
    the video, each frame is computed once per step, time stays linear; less: overlaps are blended);
    `max_length`: the motion module's positional-encoding reach; a video of at most this many frames (and not
    a loop) is one window, exactly as without windows. A short piece left at either end of the video merges
    into its neighbour while the merged window stays within `length + length // 4` frames, so a step's memory
    stays within 1.25 x that of one window.
    """

    length: int = CONTEXT_LENGTH
    stride: int = CONTEXT_LENGTH
    max_length: int = 24
    shift: int = CONTEXT_LENGTH // 4
    weighting: str = "pyramid"

    def __post_init__(self) -> None:
        if not 1 <= self.stride <= self.length <= self.max_length:
            raise ValueError(f"need 1 <= stride <= length <= max_length, got {self}")

    @classmethod
    def for_motion_module(cls, max_seq_length: int, length: int = CONTEXT_LENGTH) -> ContextWindows:
        """Windows of min(`length`, the module's reach) frames that tile the video and move a quarter window
        per step."""
        length = min(length, max_seq_length)
        return cls(length=length, stride=length, max_length=max_seq_length, shift=max(1, length // 4))

    def needed(self, num_frames: int, loop: bool) -> bool:
        return loop or num_frames > self.max_length

    def offset(self, step: int, total_steps: int, num_frames: int, loop: bool) -> int:
        """How far step `step`'s layout is shifted; 0 at the last step."""
        return ((total_steps - 1 - step) * self.shift) % (num_frames if loop else self.stride)

    def layout(self, num_frames: int, offset: int = 0, loop: bool = False) -> list[Window]:
        """The windows of one step: lists of frame indices, together covering every frame."""
        if not self.needed(num_frames, loop):
            return [list(range(num_frames))]
        if loop:
            if num_frames <= self.length:  # one window, rotated so the end and the start are neighbours
                return [[(offset + j) % num_frames for j in range(num_frames)]]
            count = -(-num_frames // self.stride)
            return [[(offset + k * self.stride + j) % num_frames for j in range(self.length)] for k in range(count)]
        start = offset % self.stride
        while start > 0:
            start -= self.stride
        windows = [
            list(range(max(s, 0), min(s + self.length, num_frames))) for s in range(start, num_frames, self.stride)
        ]
        return _merge_short_ends(_drop_contained(windows), min(self.max_length, self.length + self.length // 4))

    def weights(self, size: int) -> torch.Tensor:
        # diffusers' FreeNoise weights (pyramid: 1, 2, ..., 2, 1); the method reads no block state
        return torch.tensor(FreeNoiseTransformerBlock._get_frame_weights(None, size, self.weighting))

    def initial_noise(self, shape: tuple[int, ...], generator: torch.Generator, loop: bool) -> torch.Tensor:
        """(B, C, F, h, w) float32 noise on the generator's device. With windows: FreeNoise's "shuffle_context"
        (every later stride repeats a shuffle of the frames one window back, so windows start from related noise),
        drawn by diffusers' own implementation; without: plain Gaussian noise, as before windows existed."""
        batch, channels, frames, height, width = shape
        if not self.needed(frames, loop):
            return torch.randn(shape, generator=generator, dtype=torch.float32, device=generator.device)
        settings = SimpleNamespace(
            _free_noise_context_length=self.length,
            _free_noise_context_stride=self.stride,
            _free_noise_noise_type="shuffle_context",
            vae_scale_factor=1,
        )
        return AnimateDiffFreeNoiseMixin._prepare_latents_free_noise(
            settings, batch, channels, frames, height, width, torch.float32, generator.device, generator
        )


def _drop_contained(windows: list[Window]) -> list[Window]:
    """Windows clipped at the video's ends can fall inside their neighbour: they would add nothing."""
    return [w for i, w in enumerate(windows) if not any(set(w) < set(o) for o in windows[:i] + windows[i + 1 :])]


def _merge_short_ends(windows: list[Window], limit: int) -> list[Window]:
    if len(windows) > 1 and len(set(windows[0]) | set(windows[1])) <= limit:
        windows = [sorted(set(windows[0]) | set(windows[1])), *windows[2:]]
    if len(windows) > 1 and len(set(windows[-2]) | set(windows[-1])) <= limit:
        windows = [*windows[:-2], sorted(set(windows[-2]) | set(windows[-1]))]
    return windows


def blend(
    windows: list[Window], predict: Callable[[Window | None], torch.Tensor], latents: torch.Tensor, weights
) -> torch.Tensor:
    """The noise prediction for every frame of (B, C, F, h, w) `latents`: `predict(window)` per window, averaged
    with `weights(size)` where windows overlap. A single window over all frames in order calls `predict(None)`:
    the whole video in one UNet call, bit for bit the path without windows."""
    frames = latents.shape[2]
    if len(windows) == 1 and windows[0] == list(range(frames)):
        return predict(None)
    total = torch.zeros_like(latents)
    weight = torch.zeros(frames, dtype=latents.dtype, device=latents.device)
    for window in windows:
        w = weights(len(window)).to(latents.device, latents.dtype)
        index = torch.tensor(window, device=latents.device)
        total.index_add_(2, index, predict(window) * w.view(1, 1, -1, 1, 1))
        weight.index_add_(0, index, w)
    return total / weight.view(1, 1, -1, 1, 1)
