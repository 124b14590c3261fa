"""Width-only circular padding: wraps left-right, never top-bottom, and makes decoding commute with yaw rolls."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from models.circular_padding import WidthCircularConv2d, set_width_circular_padding, width_circular_padding


def test_pads_width_circularly_and_height_with_zeros():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, padding=1)
    x = torch.randn(1, 2, 6, 10)
    manual = F.pad(F.pad(x, (1, 1, 0, 0), mode="circular"), (0, 0, 1, 1))
    expected = F.conv2d(manual, conv.weight, conv.bias)
    with width_circular_padding(conv):
        assert isinstance(conv, WidthCircularConv2d)
        out = conv(x)
    assert torch.allclose(out, expected, atol=1e-6)
    assert not conv.circular and torch.equal(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1))  # restored

    torch_circular = nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular")
    torch_circular.load_state_dict(conv.state_dict())
    # torch's circular mode also wraps top to bottom: the first and last rows differ from ours.
    assert (torch_circular(x) - out)[:, :, [0, -1]].abs().max() > 1e-3
    assert torch.allclose(torch_circular(x)[:, :, 1:-1], out[:, :, 1:-1], atol=1e-6)


def test_state_dict_unchanged_and_other_conv_kinds_refused():
    conv = nn.Conv2d(2, 3, 3, padding=1)
    keys = conv.state_dict().keys()
    set_width_circular_padding(conv, True)
    assert conv.state_dict().keys() == keys
    set_width_circular_padding(conv, False)

    class CustomConv(nn.Conv2d):
        pass

    with pytest.raises(TypeError, match="CustomConv"):
        set_width_circular_padding(nn.Sequential(CustomConv(2, 3, 3, padding=1)), True)


def test_vae_decode_commutes_with_horizontal_roll_only_when_circular(tiny_pipe):
    vae = tiny_pipe.vae
    latents = torch.randn(2, 4, 8, 16, generator=torch.Generator().manual_seed(0))
    shift = 4  # latent pixels = 32 image pixels

    def decode(z, circular):
        with torch.no_grad(), width_circular_padding(vae, circular):
            return vae.decode(z).sample

    for circular, expect_equal in ((True, True), (False, False)):
        roll_then_decode = decode(torch.roll(latents, shift, dims=-1), circular)
        decode_then_roll = torch.roll(decode(latents, circular), 8 * shift, dims=-1)
        diff = (roll_then_decode - decode_then_roll).abs().max().item()
        assert (diff < 1e-4) is expect_equal, (circular, diff)
