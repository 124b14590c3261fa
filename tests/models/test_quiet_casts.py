"""Moving the pipeline to another dtype prints nothing a user cannot act on (diffusers warned on every cast)."""

from __future__ import annotations

import torch

from models.tiny import build_tiny_pipeline


def test_a_dtype_cast_is_silent_and_complete(capfd) -> None:
    pipe = build_tiny_pipeline()
    capfd.readouterr()
    pipe.to("cpu", torch.bfloat16)
    _, err = capfd.readouterr()
    assert "float32" not in err, err
    for module in (pipe.unet, pipe.vae, pipe.text_encoder, pipe.adapter):
        assert {p.dtype for p in module.parameters()} == {torch.bfloat16}
