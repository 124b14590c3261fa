"""Training on the tiny model with tiny synthetic data: learning, checkpoints, resume, validation, logs."""

import csv

import numpy as np
import pytest
import torch

from models.checkpoints import load_adapter
from models.errors import CheckpointError
from models.training.checkpointing import ADAPTER_FILE, list_checkpoints, load_adapter_weights
from models.training.trainer import AdapterTrainer, train
from tests.training.conftest import H, W, tiny_config


def test_loss_decreases_on_the_tiny_model(clean_data, tmp_path):
    """Same seed, same noise and timesteps: the trained run's losses fall, and below an lr=0 control's."""
    steps, k = 24, 6
    trained = train(tiny_config(clean_data, tmp_path / "a", max_steps=steps, learning_rate=3e-3, batch_size=2))
    control = train(tiny_config(clean_data, tmp_path / "b", max_steps=steps, learning_rate=0.0, batch_size=2))
    a, b = np.array(trained.losses), np.array(control.losses)
    assert len(a) == steps and a[0] == pytest.approx(b[0])  # same start: the control is a true pairing
    assert a[-k:].mean() < 0.97 * a[:k].mean()
    assert a[-k:].mean() < 0.97 * b[-k:].mean()


def _adapter_state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_checkpoint_is_the_published_layout_and_loads_strictly_into_the_pipeline(clean_data, tmp_path):
    from models.tiny import build_tiny_pipeline

    result = train(tiny_config(clean_data, tmp_path, max_steps=2, checkpoint_every=2))
    path = result.checkpoints[-1] / ADAPTER_FILE
    state = torch.load(path, map_location="cpu", weights_only=True)
    pipe = build_tiny_pipeline(seed=0)
    assert set(state) == {f"module.{k}" for k in pipe.adapter.state_dict()}
    assert all(v.dtype == torch.float32 for v in state.values())

    kwargs = {"num_frames": 4, "height": H, "width": W, "num_inference_steps": 2, "seed": 1}
    flow = torch.rand(4, 3, H, W) * 2 - 1
    before = pipe("a beach", flow=flow, **kwargs).frames
    pipe.adapter = load_adapter(path)  # the service's strict loader (models.checkpoints)
    assert all(torch.equal(v, state[f"module.{k}"]) for k, v in pipe.adapter.state_dict().items())
    after = pipe("a beach", flow=flow, **kwargs).frames
    assert np.abs(after - before).max() > 1e-4

    # the trainer's own loader (init_adapter) is as strict
    fresh = build_tiny_pipeline(seed=0).adapter
    load_adapter_weights(fresh, path)
    assert all(torch.equal(v, state[f"module.{k}"]) for k, v in fresh.state_dict().items())
    broken = dict(state)
    broken.pop(next(iter(broken)))
    torch.save(broken, tmp_path / "broken.ckpt")
    for load in (load_adapter, lambda p: load_adapter_weights(build_tiny_pipeline(seed=0).adapter, p)):
        with pytest.raises(CheckpointError, match="missing"):
            load(tmp_path / "broken.ckpt")


def test_resume_continues_the_step_count_and_state(clean_data, tmp_path):
    straight = train(tiny_config(clean_data, tmp_path / "straight", max_steps=5, checkpoint_every=3))
    assert [p.name for _, p in list_checkpoints(tmp_path / "straight")] == ["step-0000003", "step-0000005"]

    first = train(tiny_config(clean_data, tmp_path / "run", max_steps=3, checkpoint_every=3))
    assert first.step == 3
    trainer = AdapterTrainer(tiny_config(clean_data, tmp_path / "run", max_steps=5, checkpoint_every=3))
    saved = torch.load(first.checkpoints[-1] / ADAPTER_FILE, map_location="cpu", weights_only=True)
    assert trainer.resume("latest") == first.checkpoints[-1]
    assert trainer.counter.step == 3
    for key, value in trainer.pipe.adapter.state_dict().items():
        assert torch.equal(value, saved[f"module.{key}"])
    optimizer_steps = {int(s["step"]) for s in trainer.optimizer.state_dict()["state"].values()}
    assert optimizer_steps == {3}
    resumed = trainer.train()
    assert resumed.step == 5 and len(resumed.losses) == 2
    # the RNG states came back too: the resumed steps repeat the uninterrupted run's
    assert resumed.losses == pytest.approx(straight.losses[3:], rel=1e-4)
    with open(tmp_path / "run" / "logs" / "metrics.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [1, 2, 3, 4, 5]


def test_resume_latest_without_checkpoints_starts_fresh(clean_data, tmp_path):
    result = train(tiny_config(clean_data, tmp_path, max_steps=1), resume="latest")
    assert result.resumed_from is None and result.step == 1


def test_validation_samples_and_logs_are_written(clean_data, tmp_path):
    cfg = tiny_config(
        clean_data, tmp_path, max_steps=2, validate_every=2, validation_steps=2, loggers=["csv", "tensorboard"]
    )
    result = train(cfg)
    assert len(result.samples) == 1 and result.samples[0].suffix == ".mp4"
    assert result.samples[0].stat().st_size > 1000
    from models.media.video_reader import read_frames

    assert read_frames(result.samples[0]).shape[1:] == (H, W, 3)
    assert list((tmp_path / "logs" / "tensorboard").glob("events.out.tfevents.*"))
    with open(tmp_path / "logs" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and all(float(r["loss"]) > 0 for r in rows)


def test_only_the_adapter_trains(clean_data, tmp_path):
    # no weight decay: the adapter may only change through gradients that flow back from the UNet's loss
    trainer = AdapterTrainer(tiny_config(clean_data, tmp_path, max_steps=1, weight_decay=0.0))
    frozen = {name: _adapter_state(getattr(trainer.pipe, name)) for name in ("vae", "text_encoder", "unet")}
    adapter_before = _adapter_state(trainer.pipe.adapter)
    trainer.train()
    for name, state in frozen.items():
        now = getattr(trainer.pipe, name).state_dict()
        assert all(torch.equal(v, now[k]) for k, v in state.items()), name
    adapter_after = trainer.pipe.adapter.state_dict()
    changed = [k for k, v in adapter_before.items() if not torch.equal(v, adapter_after[k])]
    assert len(changed) == len(adapter_before)  # every adapter tensor, down to the last stage, got a gradient
