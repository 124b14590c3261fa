"""Issue 19's faster forms of the same function: sub-pixel upsampling and the prompt's keys and values projected
once per video. Each must equal diffusers' own computation to float rounding, in every mode it can meet."""

import copy

import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from diffusers.models.upsampling import Upsample2D

from models.circular_padding import set_width_circular_padding
from models.cross_attention import PerVideoContextAttnProcessor, use_per_video_context
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
