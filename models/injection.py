"""Adding the 360-Adapter's features to UNetMotionModel exactly where the authors' code adds them.

The authors add feature i in place to the output of down block i; that tensor is also the block's last skip
connection, so the skip carries the feature too. A forward hook on `down_blocks[i]` that returns
`(h + f, skips[:-1] + (h + f,))` reproduces this exactly. diffusers' `down_block_additional_residuals`
(ControlNet-style) adds to every skip but not to `h`, which is a different model.
"""

from __future__ import annotations

import torch
from diffusers.models.unets.unet_motion_model import UNetMotionModel
from torch import nn


class AdapterInjector:
    """Holds the features for the UNet calls in progress; with none set, the UNet is untouched."""

    def __init__(self, unet: UNetMotionModel) -> None:
        self.features: list[torch.Tensor] | None = None
        self.scale = 1.0
        self._handles = [block.register_forward_hook(self._hook(i)) for i, block in enumerate(unet.down_blocks)]

    def set(self, features: list[torch.Tensor] | None, scale: float = 1.0) -> None:
        self.features = features
        self.scale = scale

    def clear(self) -> None:
        self.features = None

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _hook(self, index: int):
        def hook(module: nn.Module, args: tuple, output: tuple[torch.Tensor, tuple[torch.Tensor, ...]]):
            if self.features is None or self.scale == 0:
                return None
            hidden, skips = output
            feature = self.features[index].to(hidden.dtype)
            if feature.shape[0] != hidden.shape[0]:
                # A batch-1 condition serves every video of the classifier-free-guidance batch (b-major frames).
                feature = feature.repeat(hidden.shape[0] // feature.shape[0], 1, 1, 1)
            hidden = hidden + self.scale * feature
            return hidden, (*skips[:-1], hidden)

        return hook
