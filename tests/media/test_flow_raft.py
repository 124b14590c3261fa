"""The RAFT flow backend: torchvision's key layout and outputs, batched panorama extraction, loading errors, CLI.

The reference (fixtures/raft_keys.json, fixtures/raft_reference_flows.npz) was recorded from torchvision 0.29.1
by scripts/record_raft_reference.py on the deterministic weights and images of tests/media/raft_inputs.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from typer.testing import CliRunner

from cli.main import app
from models.errors import CheckpointError
from models.media.errors import FlowInputError
from models.media.flow_extract import FlowBackend, extract_flow
from models.media.flow_video import load_flow_condition
from models.media.video_writer import write_video
from models.raft import LARGE, SMALL, Raft, build_raft
from tests.media.raft_inputs import FIXTURES, panorama_pair, raft_layout, raft_state, save_raft_weights
from tests.tools import last_json, plain


def to_model_input(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1


@pytest.mark.parametrize(("size", "config"), [("large", LARGE), ("small", SMALL)])
def test_state_dict_layout_is_torchvisions(size, config) -> None:
    ours = {k: tuple(v.shape) for k, v in Raft(config).state_dict().items()}
    assert ours == raft_layout(size)


@pytest.mark.parametrize("size", ["large", "small"])
def test_flow_equals_torchvisions_on_the_same_weights(size) -> None:
    model = build_raft(raft_state(size))
    first, second = panorama_pair()
    with torch.inference_mode():
        flow = model(to_model_input(first), to_model_input(second))[0].numpy()
    reference = np.load(FIXTURES / "raft_reference_flows.npz")[size]
    assert np.abs(reference).mean() > 1  # 12 refinement steps of random weights: large, non-trivial flow
    np.testing.assert_allclose(flow, reference, rtol=0, atol=1e-3)


def test_clip_extraction_equals_pairwise_raft_on_wrap_padded_frames(tmp_path) -> None:
    """Each frame encoded once and pairs batched give what RAFT gives one wrap-padded pair at a time."""
    weights = save_raft_weights(tmp_path / "raft_small.pth")
    first, _ = panorama_pair()
    clip = np.stack([np.roll(first, 3 * t, axis=1) for t in range(6)])  # 5 pairs: more than one batch
    reported = []
    flow = extract_flow(clip, FlowBackend("raft", weights, "cpu"), progress=lambda done, total: reported.append(done))
    assert flow.shape == (5, 128, 256, 2) and flow.dtype == np.float32
    assert reported[-1] == 5

    model, pad = build_raft(raft_state("small")), 32
    for t in range(5):
        pair = [F.pad(to_model_input(clip[t + i]), (pad, pad, 0, 0), mode="circular") for i in (0, 1)]
        with torch.inference_mode():
            expected = model(*pair)[0, :, :, pad:-pad].permute(1, 2, 0).numpy()
        np.testing.assert_allclose(flow[t], expected, rtol=0, atol=1e-3)


@pytest.mark.parametrize(("h", "w"), [(64, 128), (60, 120), (200, 400)])
def test_any_panorama_size_gives_flow_at_that_size(tmp_path, h, w) -> None:
    """Below 128 px or off the multiple of 8, frames are resized for RAFT and the flow scaled back."""
    weights = save_raft_weights(tmp_path / "raft_small.pth")
    first, second = panorama_pair(h, w)
    flow = extract_flow(np.stack([first, second]), FlowBackend("raft", weights, "cpu"))
    assert flow.shape == (1, h, w, 2) and np.isfinite(flow).all()


@pytest.mark.parametrize("wrap", ["bare", "state_dict", "module", "safetensors"])
def test_published_file_layouts_load(tmp_path, wrap) -> None:
    state = raft_state("large")
    if wrap == "safetensors":
        path = tmp_path / "raft.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, path)
    else:
        path = tmp_path / "raft.pth"
        if wrap == "module":
            state = {f"module.{k}": v for k, v in state.items()}
        torch.save({"state_dict": state} if wrap == "state_dict" else state, path)
    model = FlowBackend("raft", path, "cpu").raft()
    assert model.config == LARGE
    np.testing.assert_array_equal(
        model.state_dict()["update_block.flow_head.conv2.weight"].numpy(),
        raft_state("large")["update_block.flow_head.conv2.weight"].numpy(),
    )


def test_wrong_or_broken_weights_are_refused_with_the_reason(tmp_path) -> None:
    not_raft = tmp_path / "adapter.pth"
    torch.save({"adapter.conv_in.weight": torch.zeros(8, 3, 3, 3)}, not_raft)
    with pytest.raises(
        CheckpointError,
        match=r"is not a torchvision RAFT \(raft_large or raft_small\) checkpoint: .*missing.*unexpected",
    ):
        FlowBackend("raft", not_raft, "cpu").raft()

    mis_shaped = raft_state("small")
    mis_shaped["update_block.flow_head.conv2.weight"] = torch.zeros(2, 64, 3, 3)
    with pytest.raises(
        CheckpointError, match=r"1 mis-shaped: update_block.flow_head.conv2.weight \(2, 64, 3, 3\) != \(2, 128, 3, 3\)"
    ):
        build_raft(mis_shaped, "mine.pth")

    truncated = save_raft_weights(tmp_path / "truncated.pth")
    truncated.write_bytes(truncated.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        FlowBackend("raft", truncated, "cpu").raft()
    with pytest.raises(CheckpointError, match=r"absent\.pth: no such file"):
        FlowBackend("raft", tmp_path / "absent.pth", "cpu").raft()
    with pytest.raises(FlowInputError, match="needs local weights"):
        FlowBackend("raft")


def test_cli_and_generation_condition_use_raft(tmp_path) -> None:
    weights = save_raft_weights(tmp_path / "raft_small.pth")
    first, _ = panorama_pair(64, 128)
    clip = write_video(np.stack([np.roll(first, 2 * t, axis=1) for t in range(5)]), tmp_path / "clip.mp4", quality=0)
    runner = CliRunner()
    args = ["flow", "extract", str(clip), "-o", str(tmp_path / "flow.mp4"), "--height", "64", "--backend", "raft"]
    result = runner.invoke(app, [*args, "--raft-weights", str(weights), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert last_json(result.output)["frames"] == 4

    result = runner.invoke(app, args, env={"DVD360_RAFT_WEIGHTS": ""})
    assert result.exit_code == 2 and "needs local weights" in plain(result.output)
    result = runner.invoke(app, [*args, "--raft-weights", str(clip)])
    assert result.exit_code == 2 and "not a readable checkpoint" in plain(result.output)

    condition = load_flow_condition(clip, "panorama_clip", 3, 64, 128, FlowBackend("raft", weights, "cpu"))
    assert condition.shape == (3, 3, 64, 128) and condition.min() >= -1 and condition.max() <= 1


def test_workers_refuse_raft_without_weights_at_start(tmp_path) -> None:
    from pydantic import ValidationError

    from core.settings import Settings

    with pytest.raises(ValidationError, match="DVD360_FLOW_BACKEND=raft needs DVD360_RAFT_WEIGHTS"):
        Settings(flow_backend="raft")
    assert Settings(flow_backend="raft", raft_weights=tmp_path / "raft.pth").raft_weights == tmp_path / "raft.pth"
    assert Settings(raft_weights="").raft_weights is None  # what compose passes for an unset variable
