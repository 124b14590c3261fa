"""AnimateDiff-v1 normalisation statistics on diffusers' UNetMotionModel."""

import pytest
import torch
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D
from torch import nn

from models.groupnorm_v1 import (
    FrameJointGroupNorm,
    PerFrameGroupNorm,
    use_animatediff_v1_norms,
    uses_animatediff_v1_norms,
)


def _manual_group_norm(x: torch.Tensor, groups: int, eps: float, dims: tuple[int, ...]) -> torch.Tensor:
    """Normalise x (N, C, ...) per sample and channel group, with mean and variance over `dims` of the grouped view."""
    n, c = x.shape[:2]
    g = x.reshape(n, groups, c // groups, *x.shape[2:])
    mean = g.mean(dim=dims, keepdim=True)
    var = g.var(dim=dims, keepdim=True, unbiased=False)
    return ((g - mean) / torch.sqrt(var + eps)).reshape(x.shape)


def test_frame_joint_norm_uses_statistics_over_all_frames_of_each_video():
    from models.groupnorm_v1 import _FrameCount

    norm = nn.GroupNorm(4, 8)
    norm.__class__ = FrameJointGroupNorm
    norm.frame_count = _FrameCount()
    norm.frame_count.num_frames = 3
    x = torch.randn(2 * 3, 8, 5, 7)
    video = x.reshape(2, 3, 8, 5, 7).transpose(1, 2)  # (B, C, F, H, W)
    expected = _manual_group_norm(video, 4, norm.eps, dims=(2, 3, 4, 5)).transpose(1, 2).reshape(x.shape)
    assert torch.allclose(norm(x), expected, atol=1e-5)
    # Videos of a batch never share statistics: changing video 1 leaves video 0 untouched.
    y = x.clone()
    y[3:] *= 5
    assert torch.equal(norm(x)[:3], norm(y)[:3])


def test_per_frame_norm_matches_frame_by_frame_group_norm():
    norm = nn.GroupNorm(4, 8)
    norm.__class__ = PerFrameGroupNorm
    x = torch.randn(2, 8, 3, 5, 7)  # (B, C, F, H, W) as AnimateDiffTransformer3D hands it over
    per_frame = torch.stack([nn.functional.group_norm(x[:, :, f], 4, eps=norm.eps) for f in range(3)], dim=2)
    assert torch.allclose(norm(x), per_frame, atol=1e-5)


def _unet_output(unet):
    g = torch.Generator().manual_seed(0)
    sample = torch.randn(2, 4, 4, 8, 16, generator=g)
    text = torch.randn(8, 77, unet.config.cross_attention_dim, generator=g)
    with torch.no_grad():
        return unet(sample, torch.tensor(700), text).sample


def test_v1_norms_are_default_switchable_and_keep_state_dict(tiny_pipe):
    unet = tiny_pipe.unet
    assert uses_animatediff_v1_norms(unet)
    keys_v1 = {k: v.clone() for k, v in unet.state_dict().items()}
    v1 = _unet_output(unet)
    joint = [m for m in unet.modules() if isinstance(m, FrameJointGroupNorm)]
    per_frame = [m for m in unet.modules() if isinstance(m, PerFrameGroupNorm)]
    n_resnets = sum(isinstance(m, ResnetBlock2D) for m in unet.modules())
    assert len(joint) == 2 * n_resnets + 1  # norm1 + norm2 of every ResNet block, and conv_norm_out
    assert len(per_frame) == sum(isinstance(m, AnimateDiffTransformer3D) for m in unet.modules()) > 0
    try:
        use_animatediff_v1_norms(unet, False)
        assert not uses_animatediff_v1_norms(unet)
        diffusers_stats = _unet_output(unet)
        state = unet.state_dict()  # once: rebuilding it per key took 13-19 s
        assert state.keys() == keys_v1.keys()
        assert all(torch.equal(state[k], v) for k, v in keys_v1.items())
    finally:
        use_animatediff_v1_norms(unet, True)
    assert (v1 - diffusers_stats).abs().mean() > 1e-4  # the statistics really differ
    assert torch.equal(_unet_output(unet), v1)  # and switching back restores v1 exactly


def _joint_norm(groups=4, channels=8, frames=3, affine=True):
    from models.groupnorm_v1 import _FrameCount

    norm = nn.GroupNorm(groups, channels, affine=affine)
    if affine:
        with torch.no_grad():
            norm.weight.normal_()
            norm.bias.normal_()
    norm.__class__ = FrameJointGroupNorm
    norm.frame_count = _FrameCount()
    norm.frame_count.num_frames = frames
    return norm


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize(("dtype", "ulps"), [(torch.float32, 1e-5), (torch.float16, 2**-9), (torch.bfloat16, 2**-6)])
def test_in_place_joint_norm_equals_group_norm_on_the_transposed_video(affine, dtype, ulps):
    """The GPU form (statistics read in place, one fused multiply-add) against the CPU form (group_norm on a
    transposed copy), within one rounding step of the output's precision."""
    from models.groupnorm_v1 import frame_joint_group_norm

    torch.manual_seed(0)
    norm = _joint_norm(affine=affine)
    x = torch.randn(2 * 3, 8, 5, 7) * 3 + 1
    expected = norm(x)  # CPU: the transposed-copy form
    weight = None if norm.weight is None else norm.weight.to(dtype)
    bias = None if norm.bias is None else norm.bias.to(dtype)
    out = frame_joint_group_norm(x.to(dtype), 3, 4, weight, bias, norm.eps)
    assert out.dtype == dtype and out.is_contiguous() and out.shape == x.shape
    assert (out.float() - expected).abs().max() <= 2 * ulps * expected.abs().max()


def test_joint_norm_takes_the_in_place_form_off_the_cpu(monkeypatch):
    import models.groupnorm_v1

    calls = []
    real = models.groupnorm_v1.frame_joint_group_norm
    monkeypatch.setattr(
        models.groupnorm_v1, "frame_joint_group_norm", lambda x, *a: calls.append(x.device.type) or real(x, *a)
    )
    norm = _joint_norm()
    norm(torch.randn(6, 8, 5, 7))
    assert calls == []
    out = norm.to("meta")(torch.empty(6, 8, 5, 7, device="meta"))  # any non-CPU device (no GPU here)
    assert calls == ["meta"] and out.shape == (6, 8, 5, 7)


def test_a_deep_copied_unet_counts_its_own_frames(tiny_pipe):
    """The frame-count hook reads through the module: a copy made after a 4-frame call normalises a 3-frame call
    over its 3 frames (a hook closing over the original's counter left the copy's norms at 4 and failed)."""
    import copy

    unet = tiny_pipe.unet
    text = torch.randn(2, 77, unet.config.cross_attention_dim)
    with torch.no_grad():
        unet(torch.randn(2, 4, 4, 8, 16), 10, encoder_hidden_states=text)
        clone = copy.deepcopy(unet)
        three_frames = torch.randn(2, 4, 3, 8, 16)
        assert torch.equal(clone(three_frames, 10, text).sample, unet(three_frames, 10, text).sample)
