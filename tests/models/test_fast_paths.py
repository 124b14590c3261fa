"""Issue 19's faster forms of the same function: sub-pixel upsampling, the prompt's keys and values projected
once per video, and convolutions over tiny maps as one matrix product on CPU. Each must equal diffusers' own
computation to float rounding, in every mode it can meet."""

import copy

import pytest
import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from diffusers.models.upsampling import Upsample2D
from torch import nn

from models.circular_padding import WidthCircularConv2d, set_width_circular_padding
from models.cross_attention import PerVideoContextAttnProcessor, use_per_video_context
from models.small_map_conv import SMALL_MAP_PIXELS, conv_as_matmul, conv_as_matmul_applies
from models.subpixel_upsample import SubpixelUpsample2D, phase_kernels, use_subpixel_upsampling


@pytest.mark.parametrize("circular", [False, True])
@pytest.mark.parametrize(("size", "bias"), [((5, 7), True), ((1, 1), True), ((4, 8), False)])
def test_subpixel_upsampling_equals_nearest_upsample_then_conv(circular, size, bias):
    torch.manual_seed(0)
    reference = Upsample2D(6, use_conv=True, out_channels=5)
    if not bias:
        reference.conv.bias = None
    fast = copy.deepcopy(reference)
    assert use_subpixel_upsampling(fast) == 1 and isinstance(fast, SubpixelUpsample2D)
    set_width_circular_padding(reference, circular)
    set_width_circular_padding(fast, circular)
    x = torch.randn(3, 6, *size)
    expected = reference(x)
    assert expected.shape == (3, 5, 2 * size[0], 2 * size[1])
    torch.testing.assert_close(fast(x), expected, atol=1e-5, rtol=1e-5)


def test_subpixel_upsampling_keeps_odd_output_sizes_and_state_dict_and_switches_back():
    torch.manual_seed(0)
    reference = Upsample2D(4, use_conv=True)
    fast = copy.deepcopy(reference)
    use_subpixel_upsampling(fast)
    x = torch.randn(1, 4, 5, 6)
    # UNet up blocks pass the skip's size when the input was odd: not a plain 2x, diffusers' path is kept
    assert torch.equal(fast(x, output_size=(11, 12)), reference(x, output_size=(11, 12)))
    torch.testing.assert_close(fast(x, output_size=(10, 12)), reference(x), atol=1e-5, rtol=1e-5)
    assert fast.state_dict().keys() == reference.state_dict().keys()
    assert use_subpixel_upsampling(fast, enabled=False) == 1 and type(fast) is Upsample2D


def test_only_plain_upsamplers_are_switched():
    transposed = Upsample2D(4, use_conv_transpose=True)
    no_conv = Upsample2D(4, use_conv=False)
    wide = Upsample2D(4, use_conv=True, kernel_size=5, padding=2)
    assert sum(use_subpixel_upsampling(m) for m in (transposed, no_conv, wide)) == 0


def test_phase_kernels_sum_the_taps_each_phase_sees():
    weight = torch.arange(9.0).view(1, 1, 3, 3)
    kernels = phase_kernels(weight).view(2, 2, 2, 2)  # (row phase, column phase, window row, window column)
    # row phase 0 reads rows (i-1, i) with kernel rows 0 and 1+2; column phase 1 reads columns (j, j+1) with 0+1, 2
    assert kernels[0, 1].tolist() == [[0 + 1, 2], [3 + 4 + 6 + 7, 5 + 8]]


def _cross_attention(batch_rows: int, videos: int):
    torch.manual_seed(0)
    layer = Attention(query_dim=16, cross_attention_dim=12, heads=2, dim_head=8)
    hidden = torch.randn(batch_rows, 10, 16)
    context = torch.randn(videos, 7, 12)
    return layer, hidden, context


@pytest.mark.parametrize("videos", [1, 2])
def test_per_video_context_equals_the_context_repeated_per_frame(videos):
    layer, hidden, context = _cross_attention(batch_rows=4 * videos, videos=videos)
    layer.set_processor(AttnProcessor2_0())
    expected = layer(hidden, encoder_hidden_states=context.repeat_interleave(4, dim=0))
    layer.set_processor(PerVideoContextAttnProcessor())
    torch.testing.assert_close(layer(hidden, encoder_hidden_states=context), expected, atol=1e-6, rtol=1e-5)
    # a context already repeated per frame (the training loop's) is one video per row: the same result
    torch.testing.assert_close(
        layer(hidden, encoder_hidden_states=context.repeat_interleave(4, dim=0)), expected, atol=1e-6, rtol=1e-5
    )


def test_per_video_context_falls_back_for_masks():
    layer, hidden, context = _cross_attention(batch_rows=4, videos=2)
    mask = torch.ones(4, 7, dtype=torch.bool)
    mask[:, -2:] = False
    layer.set_processor(AttnProcessor2_0())
    expected = layer(hidden, encoder_hidden_states=context.repeat_interleave(2, dim=0), attention_mask=mask)
    layer.set_processor(PerVideoContextAttnProcessor())
    torch.testing.assert_close(layer(hidden, encoder_hidden_states=context, attention_mask=mask), expected)


def test_the_tiny_unet_with_one_context_per_video_equals_diffusers(tiny_pipe):
    unet = copy.deepcopy(tiny_pipe.unet)
    assert use_per_video_context(unet) > 0
    for module in unet.modules():
        if isinstance(module, Attention) and not module.is_cross_attention:
            assert not isinstance(module.processor, PerVideoContextAttnProcessor)  # motion and self-attention
    torch.manual_seed(0)
    latents = torch.randn(2, 4, 3, 8, 16)
    prompt = torch.randn(2, 77, unet.config.cross_attention_dim)
    with torch.no_grad():
        ours = unet(latents, 10, encoder_hidden_states=prompt).sample
        unet.set_attn_processor(AttnProcessor2_0())
        reference = unet(latents, 10, encoder_hidden_states=prompt.repeat_interleave(3, dim=0)).sample
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)


def test_the_pipeline_uses_both(tiny_pipe):
    upsamplers = [m for m in tiny_pipe.vae.modules() if isinstance(m, Upsample2D)]
    assert upsamplers and all(isinstance(m, SubpixelUpsample2D) for m in upsamplers)
    assert not any(isinstance(m, SubpixelUpsample2D) for m in tiny_pipe.unet.modules())  # measured: no gain there
    processors = [m.processor for m in tiny_pipe.unet.modules() if isinstance(m, Attention) and m.is_cross_attention]
    assert processors and all(isinstance(p, PerVideoContextAttnProcessor) for p in processors)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(
    ("size", "kernel", "stride", "padding"),
    [
        ((2, 4), 3, (1, 1), (1, 1)),
        ((4, 8), 3, (2, 2), (1, 1)),
        ((2, 6), 3, (1, 1), (1, 0)),
        ((3, 5), 1, (1, 1), (0, 0)),
    ],
)
def test_conv_as_matmul_equals_conv2d(size, kernel, stride, padding, bias):
    torch.manual_seed(0)
    x = torch.randn(5, 7, *size)
    weight = torch.randn(6, 7, kernel, kernel)
    b = torch.randn(6) if bias else None
    expected = F.conv2d(x, weight, b, stride, padding)
    torch.testing.assert_close(conv_as_matmul(x, weight, b, stride, padding), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("circular", [False, True])
@pytest.mark.parametrize(("size", "stride"), [((2, 4), 1), ((1, 1), 1), ((4, 8), 2), ((8, 16), 1)])
def test_padded_convs_on_tiny_maps_are_one_matrix_product_with_the_same_result(monkeypatch, circular, size, stride):
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 5, 3, stride=stride, padding=1)
    x = torch.randn(3, 8, *size)
    padded = F.pad(x, (1, 1, 0, 0), mode="circular") if circular else F.pad(x, (1, 1, 0, 0))
    expected = F.conv2d(padded, conv.weight, conv.bias, stride, (1, 0))  # the wrap (or zeros) spelled out
    set_width_circular_padding(conv, circular)
    assert isinstance(conv, WidthCircularConv2d)
    out_pixels = (size[0] // stride) * (size[1] // stride)
    tiny = out_pixels <= SMALL_MAP_PIXELS
    calls = []
    real_mm, real_conv2d = torch.addmm, F.conv2d
    monkeypatch.setattr(torch, "addmm", lambda *a, **k: calls.append("mm") or real_mm(*a, **k))
    monkeypatch.setattr(F, "conv2d", lambda *a, **k: calls.append("conv") or real_conv2d(*a, **k))
    with torch.no_grad():
        out = conv(x)
    monkeypatch.undo()
    assert calls == (["mm"] if tiny else ["conv"])
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_conv_as_matmul_applies_only_to_plain_cpu_convs_on_tiny_maps():
    x, weight = torch.empty(2, 4, 2, 4), torch.empty(4, 4, 3, 3)
    assert conv_as_matmul_applies(x, weight, (1, 1), (1, 1), (1, 1), 1)
    assert not conv_as_matmul_applies(torch.empty(2, 4, 8, 8), weight, (1, 1), (1, 1), (1, 1), 1)  # 64 pixels
    assert conv_as_matmul_applies(torch.empty(2, 4, 8, 8), weight, (2, 2), (1, 1), (1, 1), 1)  # 4x4 out
    assert not conv_as_matmul_applies(x, torch.empty(4, 2, 3, 3), (1, 1), (1, 1), (1, 1), 2)  # grouped
    assert not conv_as_matmul_applies(x, weight, (1, 1), (2, 2), (2, 2), 1)  # dilated
    assert not conv_as_matmul_applies(x.to("meta"), weight.to("meta"), (1, 1), (1, 1), (1, 1), 1)  # not CPU


def test_tiny_map_convs_train_like_conv2d():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 3, 3, padding=1)
    reference = copy.deepcopy(conv)
    set_width_circular_padding(conv, False)
    x = torch.randn(2, 4, 2, 4, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    conv(x).square().sum().backward()
    reference(x_ref).square().sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(conv.weight.grad, reference.weight.grad, atol=1e-5, rtol=1e-5)
