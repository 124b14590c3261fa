"""Training settings: one dataclass, read from YAML or JSON, overridable with key=value pairs."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Any, get_args, get_type_hints

import yaml

MIXED_PRECISION = ("no", "fp16", "bf16")
LR_SCHEDULES = ("constant", "constant_with_warmup", "linear", "cosine")
LOGGERS = ("csv", "tensorboard")


@dataclass
class TrainConfig:
    # data
    csv: str = ""
    videos_dir: str = ""
    flows_dir: str = ""
    num_frames: int = 16
    stride: int = 4
    height: int = 512
    width: int = 1024
    flip_prob: float = 0.5
    roll: bool = True
    caption_dropout: float = 0.1
    flow_dropout: float = 0.2
    num_workers: int = 4
    # model: "tiny" (built in), a registry name (with `registry`), or a saved model folder in `weights`
    model: str = "tiny"
    registry: str | None = None
    weights: str | None = None
    init_adapter: str | None = None  # start from an adapter checkpoint (published layout)
    v1_norms: bool | None = None  # None: the model's own setting (AnimateDiff v1 GroupNorm statistics by default)
    gradient_checkpointing: bool = False
    # optimisation (the authors': AdamW lr 1e-5, weight decay 1e-2, batch 1, 100k steps, grad clip, fp16)
    output_dir: str = "runs/adapter"
    max_steps: int = 100_000
    batch_size: int = 1
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-5
    weight_decay: float = 1e-2
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    mixed_precision: str = "no"
    seed: int = 42
    # bookkeeping
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    log_every: int = 10
    loggers: list[str] = field(default_factory=lambda: ["csv", "tensorboard"])
    progress: bool = True
    # validation samples (0 disables); prompt and flow default to the first training clip's
    validate_every: int = 0
    validation_prompt: str | None = None
    validation_flow: str | None = None
    validation_steps: int = 25
    validation_guidance: float = 7.5
    validation_seed: int = 0
    validation_fps: int = 8

    def validate(self) -> TrainConfig:
        problems = []
        if self.mixed_precision not in MIXED_PRECISION:
            problems.append(f"mixed_precision must be one of {MIXED_PRECISION}")
        if self.lr_schedule not in LR_SCHEDULES:
            problems.append(f"lr_schedule must be one of {LR_SCHEDULES}")
        if unknown := set(self.loggers) - set(LOGGERS):
            problems.append(f"unknown logger(s) {sorted(unknown)}; use {LOGGERS}")
        if self.width != 2 * self.height or self.height % 64:
            problems.append("width must be 2 x height, both multiples of 64")
        for name in ("num_frames", "stride", "max_steps", "batch_size", "gradient_accumulation_steps"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1")
        for name in ("csv", "videos_dir", "flows_dir"):
            if not getattr(self, name):
                problems.append(f"{name} is required")
        if problems:
            raise ValueError("invalid training config: " + "; ".join(problems))
        return self

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        if unknown := set(values) - known:
            raise ValueError(f"unknown training setting(s): {', '.join(sorted(unknown))}")
        return cls(**values)

    @classmethod
    def from_file(cls, path: str | Path | None, overrides: dict[str, Any] | None = None) -> TrainConfig:
        values: dict[str, Any] = {}
        if path is not None:
            text = Path(path).read_text()
            values = (json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)) or {}
        values.update(overrides or {})
        return cls.from_dict(values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def parse_override(item: str) -> tuple[str, Any]:
    """'key=value' with value parsed as YAML (numbers, booleans, lists, null), typed by the field."""
    if "=" not in item:
        raise ValueError(f"override {item!r} is not key=value")
    key, raw = item.split("=", 1)
    key = key.strip().replace("-", "_")
    hints = get_type_hints(TrainConfig)
    if key not in hints:
        raise ValueError(f"unknown training setting {key!r}")
    hint = hints[key]
    value = yaml.safe_load(raw) if raw.strip() else ""
    if (hint is str or (isinstance(hint, UnionType) and str in get_args(hint))) and value is not None:
        value = raw  # strings stay verbatim: a prompt "yes" or "1.0" is not a boolean or a number
    elif hint is float and isinstance(value, int | str):
        value = float(value)  # YAML reads "1e-5" as a string
    return key, value
