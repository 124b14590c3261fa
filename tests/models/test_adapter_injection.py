"""The 360-Adapter's shapes and its injection into UNetMotionModel, against the authors' in-place semantics."""

import json

import pytest
import torch

from models.adapter import Adapter360
from models.injection import AdapterInjector
from tests.tools import REFERENCE

MANIFEST = REFERENCE / "adapter360_keys.json"


def _unet_inputs(pipe, batch=1, frames=4, h=8, w=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    sample = torch.randn(batch, 4, frames, h, w, generator=g)
    text = torch.randn(batch * frames, 77, pipe.unet.config.cross_attention_dim, generator=g)
    return sample, torch.tensor(500), text


def _down_block_outputs(unet, *inputs):
    shapes = []
    handles = [b.register_forward_hook(lambda m, a, out: shapes.append(out[0].shape)) for b in unet.down_blocks]
    with torch.no_grad():
        unet(*inputs)
    for h in handles:
        h.remove()
    return shapes


def test_published_adapter_has_exact_manifest_names_and_shapes():
    manifest = json.loads(MANIFEST.read_text())["tensors"]
    expected = {k.removeprefix("module."): tuple(v) for k, v in manifest.items()}
    with torch.device("meta"):
        adapter = Adapter360()
    got = {k: tuple(v.shape) for k, v in adapter.state_dict().items()}
    assert got == expected
    assert sum(v.numel() for v in adapter.parameters()) == 47_051_840


def test_full_size_adapter_features_match_sd15_down_block_outputs():
    with torch.device("meta"):
        adapter = Adapter360()
        features = adapter(torch.empty(1, 16, 3, 512, 1024))
    # SD-1.5 at 512x1024: latents 64x128; down blocks end at /2, /4, /8 and /8 (the last has no downsampler).
    assert [tuple(f.shape) for f in features] == [
        (16, 320, 32, 64),
        (16, 640, 16, 32),
        (16, 1280, 8, 16),
        (16, 1280, 8, 16),
    ]


def test_tiny_adapter_features_match_tiny_unet_down_block_outputs(tiny_pipe):
    sample, t, text = _unet_inputs(tiny_pipe, frames=4, h=8, w=16)
    block_shapes = _down_block_outputs(tiny_pipe.unet, sample, t, text)
    with torch.no_grad():
        features = tiny_pipe.adapter(torch.zeros(1, 4, 3, 64, 128))
    assert [f.shape for f in features] == block_shapes


def _run(pipe, inputs, features=None, scale=1.0, reference=False):
    """UNet output with features injected by our hook, or by the authors' in-place addition (reference)."""
    unet = pipe.unet
    handles = []
    if reference:
        # The authors add in place; the block's last skip is the same tensor object, so it carries the feature.
        def make(i):
            def add_in_place(module, args, out):
                f = features[i]
                out[0].add_(scale * f.repeat(out[0].shape[0] // f.shape[0], 1, 1, 1))

            return add_in_place

        handles = [b.register_forward_hook(make(i)) for i, b in enumerate(unet.down_blocks)]
    else:
        pipe.injector.set(features, scale)
    try:
        with torch.no_grad():
            return unet(*inputs).sample
    finally:
        pipe.injector.clear()
        for h in handles:
            h.remove()


@pytest.fixture()
def features(tiny_pipe):
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        return tiny_pipe.adapter(torch.rand(1, 4, 3, 64, 128, generator=g) * 2 - 1)


def test_injection_equals_in_place_reference(tiny_pipe, features):
    inputs = _unet_inputs(tiny_pipe, batch=1, frames=4)
    ours = _run(tiny_pipe, inputs, features)
    reference = _run(tiny_pipe, inputs, features, reference=True)
    plain = _run(tiny_pipe, inputs)
    assert torch.equal(ours, reference)
    assert (ours - plain).abs().max() > 1e-3  # the features do change the output


def test_controlnet_style_residuals_are_a_different_model(tiny_pipe, features):
    """diffusers' down_block_additional_residuals is not where 360DVD adds its features."""
    unet = tiny_pipe.unet
    inputs = _unet_inputs(tiny_pipe, batch=1, frames=4)
    skips = []
    hooks = [unet.conv_in.register_forward_hook(lambda m, a, out: skips.append((out,)))]
    hooks += [b.register_forward_hook(lambda m, a, out: skips.append(out[1])) for b in unet.down_blocks]
    with torch.no_grad():
        unet(*inputs)
    for h in hooks:
        h.remove()
    # The feature goes to each block's last skip only, the closest the residual argument can get.
    residuals = [torch.zeros_like(skips[0][0])]
    for i, block_skips in enumerate(skips[1:]):
        residuals += [torch.zeros_like(s) for s in block_skips[:-1]] + [features[i]]
    with torch.no_grad():
        controlnet_style = unet(*inputs, down_block_additional_residuals=tuple(residuals)).sample
    assert (_run(tiny_pipe, inputs, features) - controlnet_style).abs().max() > 1e-3


def test_features_broadcast_over_guidance_batch(tiny_pipe, features):
    inputs = _unet_inputs(tiny_pipe, batch=2, frames=4)
    broadcast = _run(tiny_pipe, inputs, features)
    explicit = _run(tiny_pipe, inputs, [f.repeat(2, 1, 1, 1) for f in features])
    assert torch.equal(broadcast, explicit)


def test_scale_and_no_features(tiny_pipe, features):
    inputs = _unet_inputs(tiny_pipe, batch=1, frames=4)
    plain = _run(tiny_pipe, inputs)
    assert torch.equal(_run(tiny_pipe, inputs, features, scale=0.0), plain)
    doubled = _run(tiny_pipe, inputs, [2 * f for f in features])
    assert torch.allclose(_run(tiny_pipe, inputs, features, scale=2.0), doubled, atol=1e-6)


def test_injector_is_inert_without_features_and_removable(tiny_pipe):
    inputs = _unet_inputs(tiny_pipe, batch=1, frames=4)
    before = _run(tiny_pipe, inputs)
    extra = AdapterInjector(tiny_pipe.unet)
    try:
        assert torch.equal(_run(tiny_pipe, inputs), before)
    finally:
        extra.remove()
