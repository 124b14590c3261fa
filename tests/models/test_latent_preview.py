"""Live previews: SD-1.5's linear latent-to-RGB map, the ERP JPEG, and the pipeline's x0 callback."""

import io

import torch
from PIL import Image

from models.latent_preview import SD15_LATENT_RGB, latent_to_rgb, preview_jpeg

SMALL = {"num_frames": 8, "height": 64, "width": 128}


def test_latent_to_rgb_is_the_linear_map_to_0_255() -> None:
    latent = torch.zeros(4, 2, 3)
    latent[0] = 1.0  # channel 1 alone: its row of the matrix, halved, around mid-grey
    latent[3, 1] = -1.0
    rgb = latent_to_rgb(latent)
    assert rgb.shape == (2, 3, 3) and rgb.dtype.name == "uint8"
    expected = ((SD15_LATENT_RGB[0] / 2 + 0.5) * 255).round()
    assert torch.equal(torch.from_numpy(rgb[0, 0]).float(), expected)
    expected_row_1 = (((SD15_LATENT_RGB[0] - SD15_LATENT_RGB[3]) / 2 + 0.5).clamp(0, 1) * 255).round()
    assert torch.equal(torch.from_numpy(rgb[1, 0]).float(), expected_row_1)


def test_preview_is_a_2_to_1_jpeg_at_least_256_wide() -> None:
    for (h, w), size in [((8, 16), (256, 128)), ((64, 128), (256, 128)), ((128, 256), (256, 128))]:
        latents = torch.randn(1, 4, 5, h, w)
        data, width, height = preview_jpeg(latents)
        picture = Image.open(io.BytesIO(data))
        assert picture.format == "JPEG" and picture.size == (width, height)
        assert (width, height) == (max(size[0], w), max(size[0], w) // 2)


def test_preview_shows_the_middle_frame() -> None:
    latents = torch.zeros(1, 4, 3, 8, 16)
    latents[0, 3, 1] = -1.0  # only the middle frame is blue-ish (channel 4 has the strongest blue weight)
    picture = Image.open(io.BytesIO(preview_jpeg(latents)[0])).convert("RGB")
    r, b = (sum(picture.getchannel(c).getdata()) / (256 * 128) for c in "RB")
    assert b > 200 and b > r + 50


def test_pipeline_previews_every_step_the_x0_facing_the_output(tiny_pipe) -> None:
    seen = []
    video = tiny_pipe(
        "x", num_inference_steps=4, seed=1, preview=lambda s, n, x0: seen.append((s, n, x0.clone())), **SMALL
    )
    assert [(s, n) for s, n, _ in seen] == [(i, 4) for i in range(1, 5)]
    assert all(x0.shape == (1, 4, 8, 8, 16) for *_, x0 in seen)
    # DDIM's last step lands on its own x0: the last preview is the output's latents, rotation undone
    assert torch.allclose(seen[-1][2], video.latents, atol=1e-5)
    assert not torch.allclose(seen[0][2], seen[-1][2])
