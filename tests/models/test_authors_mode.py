"""`Enhancements(rotate_features=False)` is the authors' released sampling loop, exactly, at any step count."""

import numpy as np
import pytest
import torch

from models.circular_padding import set_width_circular_padding, width_circular_padding
from models.enhancements import Enhancements

SMALL = {"num_frames": 4, "height": 64, "width": 128}
GUIDANCE = 7.5


@torch.no_grad()
def release_loop(pipe, prompt: str, steps: int, seed: int, flow: torch.Tensor) -> np.ndarray:
    """The released loop, transcribed from the authors' release: the adapter features are added in place
    to down block i's output for steps i <= (T // 4) * 3 and never rolled; the latents roll a quarter turn
    after every step and are decoded where the last step left them, frame by frame, width-circular."""
    frames, height, width = SMALL["num_frames"], SMALL["height"], SMALL["width"]
    text = pipe.encode_prompt(["", prompt]).repeat_interleave(frames, dim=0)
    features = pipe.encode_flow(flow, frames, height, width)
    scheduler = pipe.scheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(steps)
    latents = pipe.prepare_latents(frames, height, width, torch.Generator().manual_seed(seed))
    active: list[torch.Tensor | None] = [None]

    def add_feature(index):
        def hook(module, args, output):
            if active[0] is None:
                return None
            hidden, skips = output
            hidden = hidden + active[0][index].repeat(2, 1, 1, 1)  # same condition for both CFG halves
            return hidden, (*skips[:-1], hidden)

        return hook

    handles = [block.register_forward_hook(add_feature(i)) for i, block in enumerate(pipe.unet.down_blocks)]
    try:
        for i, t in enumerate(scheduler.timesteps):
            active[0] = features if i <= (steps // 4) * 3 else None
            set_width_circular_padding(pipe.unet, i >= steps // 2)
            model_input = scheduler.scale_model_input(torch.cat([latents] * 2), t)
            uncond, cond = pipe.unet(model_input, t, encoder_hidden_states=text).sample.chunk(2)
            latents = scheduler.step(uncond + GUIDANCE * (cond - uncond), t, latents).prev_sample
            latents = torch.roll(latents, latents.shape[-1] // 4, dims=-1)
    finally:
        set_width_circular_padding(pipe.unet, False)
        for handle in handles:
            handle.remove()
    video = []
    with width_circular_padding(pipe.vae):
        for frame in latents[0].transpose(0, 1):
            picture = pipe.vae.decode(frame[None] / pipe.vae.config.scaling_factor).sample
            video.append((picture / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy())
    return np.concatenate(video)


@pytest.mark.parametrize("steps", [4, 5], ids=["whole-turn", "quarter-turn-left"])
def test_authors_mode_equals_the_released_loop(tiny_pipe, steps):
    flow = torch.rand(4, 3, 64, 128, generator=torch.Generator().manual_seed(1)) * 2 - 1
    ours = tiny_pipe(
        "a volcano",
        flow=flow,
        seed=2,
        num_inference_steps=steps,
        guidance_scale=GUIDANCE,
        enhancements=Enhancements(rotate_features=False),
        **SMALL,
    ).frames
    released = release_loop(tiny_pipe, "a volcano", steps, 2, flow)
    np.testing.assert_allclose(ours, released, atol=2e-5)
    if steps == 5:  # the release's net quarter turn is kept: rolled back it would be another video
        assert np.abs(np.roll(released, -SMALL["width"] // 4, axis=2) - released).mean() > 1e-3
