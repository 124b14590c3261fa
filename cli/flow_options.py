"""The flow-measuring options that `flow extract`, `generate` (with a clip) and `data flows` share."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

BACKEND_HELP = "How flow is measured: dis (default, CPU, no weights), farneback, or raft (needs --raft-weights)."

RaftWeights = Annotated[
    Path | None,
    typer.Option(
        help="Local torchvision RAFT weights (raft_large_C_T_SKHT_V2-ff5fadd5.pth or raft_small); nothing is "
        "downloaded.",
        envvar="DVD360_RAFT_WEIGHTS",
    ),
]
RaftDevice = Annotated[str | None, typer.Option(help="Device for RAFT: cpu, cuda ... (default: CUDA when present).")]


def flow_backend(name: str, raft_weights: Path | None, device: str | None, hint: str):
    """The checked backend, or a usage error (exit code 2) that says what to give."""
    from models.media.errors import FlowInputError
    from models.media.flow_extract import FlowBackend

    try:
        return FlowBackend(name, raft_weights, device)
    except FlowInputError as exc:
        raise typer.BadParameter(str(exc), param_hint=hint) from exc
