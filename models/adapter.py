"""The 360-Adapter: a light flow encoder whose four feature maps are added to the UNet's down-block outputs.

Parameter names and shapes follow the published `360Adapter_flow_v1.ckpt` (see
shared/reference/360dvd/adapter360_keys.json): `conv_in`, then `body.{stage * num_res_blocks + j}` with
`in_conv` (1x1, only where the channel count changes), `block1` (conv over space, kernel 1x3x3) and `block2`
(conv over time, kernel 3x1x1).
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class PseudoResBlock3D(nn.Module):
    """conv(1,3,3) over space -> ReLU -> conv(3,1,1) over time, plus the identity skip."""

    def __init__(self, channels: int, in_channels: int | None = None, downsample: bool = False) -> None:
        super().__init__()
        self.downsample = nn.AvgPool2d(2, 2) if downsample else None
        self.in_conv = nn.Conv2d(in_channels, channels, 1) if in_channels not in (None, channels) else None
        self.block1 = nn.Conv3d(channels, channels, (1, 3, 3), padding=(0, 1, 1))
        self.act = nn.ReLU()
        self.block2 = nn.Conv3d(channels, channels, (3, 1, 1), padding=(1, 0, 0))

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        if self.downsample is not None:
            x = self.downsample(x)
        if self.in_conv is not None:
            x = self.in_conv(x)
        # (B*F, C, h, w) -> (B, C, F, h, w) for the 3D convs, then back: frames stay folded into the batch.
        bf, c, h, w = x.shape
        video = x.reshape(bf // num_frames, num_frames, c, h, w).transpose(1, 2)
        out = self.block2(self.act(self.block1(video)))
        return out.transpose(1, 2).reshape(bf, c, h, w) + x


class Adapter360(ModelMixin, ConfigMixin):
    """Flow video (B, F, 3, H, W) in [-1, 1] -> one feature map per UNet down block, frames folded b-major.

    Feature i has `channels[i]` channels and the spatial size of down block i's output: H / 16, / 32, / 64,
    / 64 for the SD-1.5 UNet (every stage but the last halves the size, like the UNet's downsamplers).
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        channels: tuple[int, ...] = (320, 640, 1280, 1280),
        num_res_blocks: int = 1,
        downscale_factor: int = 8,
    ) -> None:
        super().__init__()
        self.unshuffle = nn.PixelUnshuffle(downscale_factor)
        self.conv_in = nn.Conv2d(in_channels * downscale_factor**2, channels[0], 3, padding=1)
        blocks = []
        for stage, width in enumerate(channels):
            previous = channels[stage - 1] if stage > 0 else channels[0]
            for j in range(num_res_blocks):
                blocks.append(
                    PseudoResBlock3D(
                        width,
                        in_channels=previous if j == 0 else None,
                        downsample=j == 0 and stage < len(channels) - 1,
                    )
                )
        self.body = nn.ModuleList(blocks)

    def forward(self, flow: torch.Tensor) -> list[torch.Tensor]:
        num_frames = flow.shape[1]
        x = self.conv_in(self.unshuffle(flow.flatten(0, 1)))
        features = []
        n = self.config.num_res_blocks
        for stage in range(len(self.config.channels)):
            for block in self.body[stage * n : (stage + 1) * n]:
                x = block(x, num_frames)
            features.append(x)
        return features
