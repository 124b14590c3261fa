"""Checkpoints of a training run.

Each checkpoint is a folder `checkpoints/step-0000100/` holding
- `adapter.ckpt`: the adapter alone in the published 360Adapter_flow_v1.ckpt layout (a bare state dict,
  every key prefixed `module.`, fp32), which the service's strict adapter loader reads;
- `state/`: accelerate's full training state (adapter, optimizer, LR scheduler, RNG states of every process,
  and the trainer's step counter), for `--resume`;
- `trainer_state.json`: step and epoch, human-readable.
Folders are written under a temporary name and renamed, so a folder with the final name is complete.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import torch

ADAPTER_FILE = "adapter.ckpt"
STATE_DIR = "state"
CHECKPOINT_RE = re.compile(r"^step-(\d+)$")


def adapter_state_dict_published(adapter: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The adapter's weights as the published file holds them: `module.`-prefixed keys, fp32, on the CPU."""
    return {f"module.{k}": v.detach().float().cpu().contiguous() for k, v in adapter.state_dict().items()}


def save_adapter_checkpoint(adapter: torch.nn.Module, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    torch.save(adapter_state_dict_published(adapter), tmp)
    tmp.replace(path)
    return path


def load_adapter_weights(adapter: torch.nn.Module, path: str | Path) -> None:
    """Load an adapter checkpoint (any published layout) into `adapter` strictly, with the service's checks."""
    from models.checkpoints import load_strict, read_state_dict, strip_prefix

    path = Path(path)
    load_strict(adapter, strip_prefix(read_state_dict(path), "module."), path, "360-Adapter")


def checkpoint_dir(output_dir: str | Path, step: int) -> Path:
    return Path(output_dir) / "checkpoints" / f"step-{step:07d}"


def list_checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    root = Path(output_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = CHECKPOINT_RE.match(child.name)
        if match and child.is_dir() and (child / STATE_DIR).is_dir():
            found.append((int(match.group(1)), child))
    return sorted(found)


def resolve_resume(output_dir: str | Path, resume: str | None) -> Path | None:
    """'latest' -> the newest complete checkpoint of the run (None if there is none yet); a path -> that folder."""
    if not resume:
        return None
    if resume == "latest":
        found = list_checkpoints(output_dir)
        return found[-1][1] if found else None
    path = Path(resume)
    if not (path / STATE_DIR).is_dir():
        raise FileNotFoundError(f"{path} is not a training checkpoint (no {STATE_DIR}/ inside)")
    return path


def prune_checkpoints(output_dir: str | Path, keep: int) -> None:
    if keep <= 0:
        return
    for _, path in list_checkpoints(output_dir)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)


def write_trainer_state(folder: Path, step: int, epoch: int) -> None:
    (folder / "trainer_state.json").write_text(json.dumps({"step": step, "epoch": epoch}, indent=2))


def partial_dir(final: Path) -> Path:
    return final.with_name(f".{final.name}.partial")
