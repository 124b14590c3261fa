"""Helpers of the pull tests: a catalogue of the tiny model's files on the local hub, and `dvd360 models ...`
run as a real process against that hub (no internet)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import ROOT
from tests.pull.hub_server import COMMIT, HubServer

DVD360 = str(Path(sys.executable).parent / "dvd360")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tiny_catalogue(hub: HubServer, tiny_files: dict, path: Path, **overrides) -> Path:
    """A catalogue of the tiny model in the real one's shape: SD-1.5 from the hub at a pinned commit (the UNet's
    sha256 published, the rest trusted on first use), the motion module from the hub's `main`, the adapter from a
    plain URL, the personalised file through a redirect."""
    unet = "unet/diffusion_pytorch_model.safetensors"
    components = {
        "sd15": {
            "hf": {"repo": "tiny/sd15", "revision": COMMIT},
            "files": [
                {"path": p, **({"sha256": sha256(data)} if p == unet else {})} for p, data in tiny_files["sd15"].items()
            ],
        },
        "mm": {
            "hf": {"repo": "tiny/animatediff", "revision": "main"},
            "entry": "mm_sd_v14.ckpt",
            "files": [{"path": p} for p in tiny_files["mm"]],
        },
        "adapter": {
            "entry": "360Adapter_flow_v1.ckpt",
            "files": [{"path": "360Adapter_flow_v1.ckpt", "urls": [f"{hub.url}/files/360Adapter_flow_v1.ckpt"]}],
        },
        "base": {
            "entry": "personal.safetensors",
            "files": [{"path": "personal.safetensors", "urls": [f"{hub.url}/redirect/personal.safetensors"]}],
        },
    }
    for name, change in overrides.items():
        components[name] = {**components[name], **change}
    models = {
        "tiny-real": {
            "description": "tiny weights in the published layouts",
            "sd15": "sd15",
            "base_checkpoint": "base",
            "motion_module": "mm",
            "adapter": "adapter",
        }
    }
    path.write_text(yaml.safe_dump({"components": components, "models": models}))
    return path


def pull_env(hub: HubServer, tmp_path: Path, catalogue: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVD360_", "HF_"))}
    env.update(
        PYTHONPATH=str(ROOT),
        HF_ENDPOINT=hub.url,
        HF_HOME=str(tmp_path / "hf-home"),
        HF_HUB_OFFLINE="0",
        HF_HUB_DISABLE_TELEMETRY="1",
        DVD360_MODELS_DIR=str(tmp_path / "models"),
        DVD360_CATALOGUE=str(catalogue),
        DVD360_PULL_RETRIES="3",
        DVD360_PULL_BACKOFF_S="0.05",
    )
    return env


def dvd360(env: dict, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([DVD360, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
