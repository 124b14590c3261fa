"""Adding the 360-Adapter's features to UNetMotionModel exactly where the authors' code adds them.

The authors add feature i in place to the output of down block i; that tensor is also the block's last skip
connection, so the skip carries the feature too. A forward hook on `down_blocks[i]` that returns
`(h + f, skips[:-1] + (h + f,))` reproduces this exactly. diffusers' `down_block_additional_residuals`
(ControlNet-style) adds to every skip but not to `h`, which is a different model.

The hooks stay registered for the UNet's life and read the features set for the calls in progress: adding and
removing hooks per step would invalidate torch.compile's guards.
"""

from __future__ import annotations

import torch
from diffusers.models.unets.unet_motion_model import UNetMotionModel
from torch import nn


class AdapterInjector:
    """Holds the features for the UNet calls in progress; with none set, the UNet is untouched."""

    def __init__(self, unet: UNetMotionModel) -> None:
        self.features: list[torch.Tensor] | None = None  # already scaled
        self._handles = [block.register_forward_hook(self._hook(i)) for i, block in enumerate(unet.down_blocks)]

    def set(self, features: list[torch.Tensor] | None, scale: float = 1.0) -> None:
        # Scaled here, once per step, so the hooks hold no Python number a compiled graph would specialise on.
        if features is None or scale == 0:
            self.features = None
        else:
            self.features = features if scale == 1 else [scale * f for f in features]

    def clear(self) -> None:
        self.features = None

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _hook(self, index: int):
        def hook(module: nn.Module, args: tuple, output: tuple[torch.Tensor, tuple[torch.Tensor, ...]]):
            if self.features is None:
                return None
            hidden, skips = output
            feature = self.features[index].to(hidden.dtype)
            # A batch-1 condition serves every video of the classifier-free-guidance batch (frames b-major):
            # broadcast over the videos rather than copy it per video.
            videos = hidden.shape[0] // feature.shape[0]
            hidden = (hidden.unflatten(0, (videos, -1)) + feature).flatten(0, 1)
            return hidden, (*skips[:-1], hidden)

        return hook
