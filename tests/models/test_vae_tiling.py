"""Tiled VAE decoding: one tile is the untiled decode, the blend reproduces a decoder without spatial context
exactly, tiles around the panorama wrap across the seam (and only when circular), whole-pipeline frames stay
close to the untiled ones."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from models.circular_padding import width_circular_padding
from models.vae_tiling import VaeTiling, decode_tiled


def latents(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 4, h, w, generator=torch.Generator().manual_seed(seed))


def untiled(vae, z: torch.Tensor, circular: bool) -> torch.Tensor:
    with torch.no_grad(), width_circular_padding(vae, circular):
        return vae.decode(z).sample


class PointwiseDecoder(nn.Module):
    """A VAE stand-in whose every pixel depends on its own latent pixel only: tiling changes nothing but what
    the blend does, so the tiled decode must equal the whole one."""

    def __init__(self) -> None:
        super().__init__()
        self.mix = nn.Conv2d(4, 3, 1)

    def decode(self, z: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(sample=F.interpolate(self.mix(z), scale_factor=8, mode="nearest"))


def wrap_step(pictures: torch.Tensor) -> float:
    """Mean absolute difference between the last and the first pixel column (the seam of the panorama)."""
    return (pictures[..., -1] - pictures[..., 0]).abs().mean().item()


def test_one_tile_covering_everything_is_the_untiled_decode(tiny_pipe):
    z = latents(2, 8, 16)
    for circular in (True, False):
        np.testing.assert_allclose(
            decode_tiled(tiny_pipe.vae, z, 16, 4, circular), untiled(tiny_pipe.vae, z, circular), atol=1e-6
        )


# 12x20 with tile 8: neither side is a multiple of the tile's advance, the tiles are spaced unevenly
@pytest.mark.parametrize(("h", "w", "tile", "overlap"), [(8, 16, 4, 2), (12, 20, 8, 3), (16, 32, 8, 4), (5, 9, 2, 1)])
@pytest.mark.parametrize("circular", [True, False])
def test_the_blend_reproduces_a_decoder_without_spatial_context(h, w, tile, overlap, circular):
    torch.manual_seed(0)
    decoder = PointwiseDecoder()
    z = latents(2, h, w)
    tiled = decode_tiled(decoder, z, tile, overlap, circular)
    assert tiled.shape == (2, 3, 8 * h, 8 * w)
    np.testing.assert_allclose(tiled, decoder.decode(z).sample.detach(), atol=1e-5)


def reaches_across(vae, z: torch.Tensor, tile: int, overlap: int, circular: bool) -> bool:
    """Whether the last two latent columns change the first pixel column: a tile wraps across the seam."""
    changed = z.clone()
    changed[..., -2:] += 1
    before, after = (decode_tiled(vae, x, tile, overlap, circular)[..., :1] for x in (z, changed))
    return not torch.equal(before, after)


def test_a_tile_that_does_not_divide_the_size(tiny_pipe):
    # 20 columns with tile 8: the tiles start at 0, 5, 10, 15 and the last wraps onto columns 0-2
    z = latents(1, 12, 20)
    tiled = decode_tiled(tiny_pipe.vae, z, 8, 3, circular=True)
    assert tiled.shape == (1, 3, 96, 160) and torch.isfinite(tiled).all()
    assert reaches_across(tiny_pipe.vae, z, 8, 3, circular=True)


def test_the_seam_is_blended_when_circular_and_only_then(tiny_pipe):
    vae, z = tiny_pipe.vae, latents(4, 16, 32)
    # Measured: seamless 0.16, seamed 0.28, tiled circular 0.18, tiled not circular 0.26 (seeds 1-3 alike).
    # The untiled decode gives both references: width-circular it has no seam, zero-padded it has one (its first
    # and last columns never saw each other). A tiled panorama's wrap must look like the former.
    seamless, seamed = wrap_step(untiled(vae, z, True)), wrap_step(untiled(vae, z, False))
    assert seamless < seamed  # the references differ, so the comparisons below can tell them apart
    midway = (seamless + seamed) / 2
    assert wrap_step(decode_tiled(vae, z, 8, 4, circular=True)) < midway
    assert wrap_step(decode_tiled(vae, z, 8, 4, circular=False)) > midway

    # What causes the difference: only circular tiles carry the last latent columns onto the first pixels.
    assert reaches_across(vae, z, 8, 4, circular=True)
    assert not reaches_across(vae, z, 8, 4, circular=False)


def test_whole_pipeline_frames_tiled_are_close_to_untiled(tiny_pipe):
    # denoised whole (one 128 x 256 window, as when this was measured): the tiling of the decode is what is tested
    job = {"num_frames": 2, "height": 128, "width": 256, "num_inference_steps": 2, "spatial_window": (128, 256)}
    video = tiny_pipe("a volcano", seed=4, **job)
    reference = video.frames
    try:
        tiny_pipe.vae_tiling = VaeTiling(tile=8, overlap=4)  # 3 tile rows, 8 tiles around
        tiled = np.concatenate(list(video.chunks()))
    finally:
        tiny_pipe.vae_tiling = None
    other_seed = tiny_pipe("a volcano", seed=5, **job).frames
    diff = np.abs(tiled - reference)
    # Measured (frames in [0, 1]): mean 0.029, max 0.33; another seed's frames differ by 0.196 on average. The
    # random tiny VAE sees about 5 latent pixels around each pixel and normalises over the whole picture, so in
    # 8-pixel tiles no pixel escapes the tile's edges: a trained VAE in 64-pixel tiles differs far less. The
    # bounds leave ~1.5x room over what was measured and stay well below an unrelated picture.
    assert diff.mean() < 0.05 < np.abs(other_seed - reference).mean() / 2
    assert diff.max() < 0.5


@pytest.mark.parametrize(
    ("tile", "overlap", "message"),
    [
        (0, 0, "at least 1 latent pixel"),
        (8, 8, "smaller than the tile"),
        (8, 9, "smaller than the tile"),
        (8, 0, "at least 1"),
    ],
)
def test_invalid_tiles_are_refused(tiny_pipe, tile, overlap, message):
    with pytest.raises(ValueError, match=message):
        VaeTiling(tile, overlap)
    with pytest.raises(ValueError, match=message):
        decode_tiled(tiny_pipe.vae, latents(1, 8, 16), tile, overlap, circular=True)
