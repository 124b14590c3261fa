"""AnimateDiff-v1 GroupNorm statistics on diffusers' UNetMotionModel.

The published 360DVD UNet is AnimateDiff v1 code, which normalises differently from diffusers:

| layer                                      | AnimateDiff v1 (authors)     | diffusers UNetMotionModel |
| ResNet norm1/norm2, conv_norm_out          | jointly over a video's frames | per frame                 |
| motion-module input norm                   | per frame                    | jointly over frames       |

Swapping the norm modules' classes gives the v1 statistics while parameters and state_dict keys stay the same.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D, UNetMotionModel
from torch import nn


class _FrameCount:
    """How many frames the UNet call in progress has; shared by every joint norm of one UNet."""

    num_frames = 1


class FrameJointGroupNorm(nn.GroupNorm):
    """(B*F, C, H, W) normalised with statistics over all F frames of each video, as AnimateDiff v1 does."""

    frame_count: _FrameCount

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = self.frame_count.num_frames
        if x.device.type != "cpu":
            return frame_joint_group_norm(x, frames, self.num_groups, self.weight, self.bias, self.eps)
        # CPU: torch's group_norm on a transposed copy (var_mean + addcmul measured 1.2-14x slower there)
        bf, c, h, w = x.shape
        video = x.reshape(bf // frames, frames, c, h, w).transpose(1, 2)
        out = F.group_norm(video, self.num_groups, self.weight, self.bias, self.eps)
        return out.transpose(1, 2).reshape(bf, c, h, w)


def frame_joint_group_norm(
    x: torch.Tensor, frames: int, groups: int, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float
) -> torch.Tensor:
    """(B*F, C, H, W) normalised per video and channel group over all F frames, read in place: one reduction and one
    fused multiply-add, where group_norm needs the frames moved next to the channels and back (two copies)."""
    x = x.contiguous()  # a no-op for the UNet's activations; the views below need it
    bf, c, h, w = x.shape
    per_group = c // groups
    grouped = x.view(bf // frames, frames, groups, per_group * h * w)
    var, mean = torch.var_mean(grouped, dim=(1, 3), correction=0, keepdim=True)  # (B, 1, G, 1)
    scale = (var.float() + eps).rsqrt().unsqueeze(-1)  # (B, 1, G, 1, 1), fp32 as group_norm keeps it
    if weight is not None:
        scale = scale * weight.float().view(1, 1, groups, per_group, 1)
    shift = -mean.float().unsqueeze(-1) * scale
    if bias is not None:
        shift = shift + bias.float().view(1, 1, groups, per_group, 1)
    pixels = x.view(bf // frames, frames, groups, per_group, h * w)
    return torch.addcmul(shift.to(x.dtype), pixels, scale.to(x.dtype)).view(bf, c, h, w)


class PerFrameGroupNorm(nn.GroupNorm):
    """(B, C, F, H, W) normalised frame by frame, as AnimateDiff v1's motion-module input norm does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5:
            return super().forward(x)
        b, c, f, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * f, c, h, w)
        out = F.group_norm(frames, self.num_groups, self.weight, self.bias, self.eps)
        return out.reshape(b, f, c, h, w).transpose(1, 2)


def _record_frame_count(module: nn.Module, args: tuple, kwargs: dict) -> None:
    # Read through the module, not a closure: a deep copy of the UNet then counts into its own copy's norms.
    sample = args[0] if args else kwargs["sample"]
    module._v1_frame_count.num_frames = sample.shape[2]


def use_animatediff_v1_norms(unet: UNetMotionModel, enabled: bool = True) -> None:
    """Switch the UNet between AnimateDiff-v1 statistics (enabled) and diffusers' own. Idempotent."""
    frame_count: _FrameCount | None = getattr(unet, "_v1_frame_count", None)
    if enabled and frame_count is None:
        frame_count = _FrameCount()
        unet._v1_frame_count = frame_count
        unet._v1_hook = unet.register_forward_pre_hook(_record_frame_count, with_kwargs=True)
    if not enabled and frame_count is not None:
        unet._v1_hook.remove()
        del unet._v1_frame_count, unet._v1_hook

    joint_norms = [unet.conv_norm_out] if unet.conv_norm_out is not None else []
    for module in unet.modules():
        if isinstance(module, ResnetBlock2D):
            joint_norms += [module.norm1, module.norm2]
        elif isinstance(module, AnimateDiffTransformer3D):
            module.norm.__class__ = PerFrameGroupNorm if enabled else nn.GroupNorm
    for norm in joint_norms:
        if not isinstance(norm, nn.GroupNorm):
            raise TypeError(f"expected a GroupNorm in the UNet's ResNet blocks, found {type(norm).__name__}")
        norm.__class__ = FrameJointGroupNorm if enabled else nn.GroupNorm
        if enabled:
            norm.frame_count = frame_count
        else:
            norm.__dict__.pop("frame_count", None)


def uses_animatediff_v1_norms(unet: UNetMotionModel) -> bool:
    return getattr(unet, "_v1_frame_count", None) is not None
