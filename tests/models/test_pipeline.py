"""The 360DVD sampling loop: schedule, rotation, determinism, progress, cancellation, seams."""

import numpy as np
import pytest
import torch

from models.enhancements import Enhancements, adapter_active, roll_features
from models.errors import GenerationCanceled

SMALL = {"num_frames": 8, "height": 64, "width": 128}

OFF = Enhancements(latent_rotation=False, rotate_features=False, circular_padding=False)


def seam_ratio(frames: np.ndarray) -> float:
    seam = np.abs(frames[:, :, -1] - frames[:, :, 0]).mean()
    interior = np.abs(np.diff(frames, axis=2)).mean()
    return float(seam / interior)


def test_output_shape_range_and_determinism(tiny_pipe):
    a = tiny_pipe("a volcano", seed=3, num_inference_steps=2, **SMALL)
    b = tiny_pipe("a volcano", seed=3, num_inference_steps=2, **SMALL)
    c = tiny_pipe("a volcano", seed=4, num_inference_steps=2, **SMALL)
    assert a.frames.shape == (8, 64, 128, 3) and a.frames.dtype == np.float32
    assert a.frames.min() >= 0.0 and a.frames.max() <= 1.0
    assert np.array_equal(a.frames, b.frames) and a.seed == 3
    assert np.abs(a.frames - c.frames).mean() > 1e-3


def test_random_seed_is_reported_and_reproduces(tiny_pipe):
    a = tiny_pipe("a volcano", num_inference_steps=1, **SMALL)
    b = tiny_pipe("a volcano", seed=a.seed, num_inference_steps=1, **SMALL)
    assert np.array_equal(a.frames, b.frames)


def test_progress_callback_runs_once_per_step(tiny_pipe):
    calls = []
    tiny_pipe("x", num_inference_steps=5, seed=0, progress=lambda i, n: calls.append((i, n)), **SMALL)
    assert calls == [(i, 5) for i in range(1, 6)]


def test_cancellation_stops_within_one_step(tiny_pipe):
    unet_calls = []
    hook = tiny_pipe.unet.register_forward_hook(lambda *a: unet_calls.append(1))
    done = []
    try:
        with pytest.raises(GenerationCanceled, match="after 2 of 6") as info:
            tiny_pipe(
                "x",
                num_inference_steps=6,
                seed=0,
                progress=lambda i, n: done.append(i),
                should_cancel=lambda: len(done) >= 2,
                **SMALL,
            )
    finally:
        hook.remove()
    assert info.value.step == 2 and len(unet_calls) == 2
    # The pipeline is left clean: a later call runs normally.
    assert tiny_pipe.injector.features is None
    tiny_pipe("x", num_inference_steps=1, seed=0, **SMALL)


def test_adapter_schedule_and_feature_rotation(tiny_pipe, monkeypatch):
    """Features guide steps 0..(T//4)*3 and roll with the latents (or stay put, as released)."""
    steps = 8
    for rotate_features in (True, False):
        seen = []
        monkeypatch.setattr(tiny_pipe.injector, "features", None)
        real_set = type(tiny_pipe.injector).set
        monkeypatch.setattr(
            tiny_pipe.injector,
            "set",
            lambda f, s=1.0, seen=seen, real_set=real_set: (seen.append(f), real_set(tiny_pipe.injector, f, s)),
        )
        enh = Enhancements(latent_rotation=True, rotate_features=rotate_features, circular_padding=True)
        tiny_pipe("x", num_inference_steps=steps, seed=0, enhancements=enh, **SMALL)
        monkeypatch.undo()
        active = [i for i in range(steps) if adapter_active(i, steps)]
        assert len(seen) == len(active) == (steps // 4) * 3 + 1
        base = seen[0]
        for i, feats in enumerate(seen):
            expected = roll_features(base, 4 * i, 16) if rotate_features else base
            assert all(torch.equal(f, e) for f, e in zip(feats, expected, strict=True))
        assert rotate_features == any(not torch.equal(f, b) for f, b in zip(seen[-1], base, strict=True))


def test_net_rotation_is_undone_before_decoding(tiny_pipe, monkeypatch):
    """With a UNet that predicts zero noise, rotation must not change the result at all."""

    monkeypatch.setattr(tiny_pipe, "unet", _ZeroUNet(tiny_pipe.unet))
    rotated = tiny_pipe("x", num_inference_steps=3, seed=0, enhancements=Enhancements(circular_padding=False), **SMALL)
    still = tiny_pipe("x", num_inference_steps=3, seed=0, enhancements=OFF, **SMALL)
    assert np.allclose(rotated.frames, still.frames, atol=1e-5)


class _ZeroUNet(torch.nn.Module):
    """Stands in for the UNet (same config), predicting zero noise, so only the latent bookkeeping acts."""

    def __init__(self, unet):
        super().__init__()
        self.inner = unet
        self.config = unet.config

    def forward(self, sample, t, encoder_hidden_states):
        return type("Out", (), {"sample": torch.zeros_like(sample)})()

    def modules(self):
        return self.inner.modules()


def test_enhancements_lower_the_seam(tiny_pipe):
    on = tiny_pipe("a volcano", seed=1, num_inference_steps=4, **SMALL)
    off = tiny_pipe("a volcano", seed=1, num_inference_steps=4, enhancements=OFF, **SMALL)
    assert seam_ratio(on.frames) < 0.85 * seam_ratio(off.frames)


def test_flow_condition_changes_output_and_zero_flow_equals_none(tiny_pipe):
    flow = torch.rand(8, 3, 64, 128, generator=torch.Generator().manual_seed(0)) * 2 - 1
    none = tiny_pipe("x", seed=0, num_inference_steps=2, **SMALL)
    zero = tiny_pipe("x", seed=0, num_inference_steps=2, flow=np.zeros((8, 3, 64, 128), np.float32), **SMALL)
    moved = tiny_pipe("x", seed=0, num_inference_steps=2, flow=flow, **SMALL)
    assert np.array_equal(none.frames, zero.frames)
    assert np.abs(moved.frames - none.frames).mean() > 1e-3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_frames": 129}, "between 1 and 128"),  # max_frames; beyond 24 frames: context windows
        ({"height": 64, "width": 192}, "width = 2 x height"),
        ({"height": 96, "width": 192}, "multiples of 64"),
        ({"num_inference_steps": 0}, "at least 1"),
        ({"guidance_scale": -1}, ">= 0"),
        ({"flow": np.zeros((8, 3, 32, 64), np.float32)}, "flow condition must have shape"),
    ],
)
def test_bad_inputs_are_refused_with_a_reason(tiny_pipe, kwargs, message):
    args = {**SMALL, "num_inference_steps": 1, **kwargs}
    with pytest.raises(ValueError, match=message):
        tiny_pipe("x", **args)
