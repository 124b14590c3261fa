"""Fixtures of the pull tests: the tiny model's files in the published layouts and a local hub serving them."""

from __future__ import annotations

import pytest

from tests.pull.hub_server import HubServer


@pytest.fixture(scope="session")
def tiny_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, bytes]]:
    """component -> {relative path: bytes}: SD-1.5 folder, AnimateDiff v1 motion module (+ its tiny config),
    360-Adapter and a personalised single file, written by the project's published-layout writers."""
    from models.tiny import build_tiny_components
    from tests.models.published_layouts import adapter_checkpoint, ldm_checkpoint, motion_checkpoint, sd15_folder

    out = tmp_path_factory.mktemp("published")
    parts, donor = build_tiny_components(seed=5), build_tiny_components(seed=9)
    sd15 = sd15_folder(parts, out / "sd15")
    for folder in ("mm", "adapter", "base"):
        (out / folder).mkdir()
    motion_checkpoint(parts["motion_adapter"], out / "mm" / "mm_sd_v14.ckpt", wrapped=True)
    adapter_checkpoint(parts["adapter"], out / "adapter" / "360Adapter_flow_v1.ckpt", True, True)
    ldm_checkpoint(donor["unet2d"], donor["vae"], out / "base" / "personal.safetensors", with_vae=False)
    folders = {"sd15": sd15, "mm": out / "mm", "adapter": out / "adapter", "base": out / "base"}
    return {
        name: {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        for name, folder in folders.items()
    }


@pytest.fixture
def server():
    """A local hub serving nothing yet (tests put repos, files and faults in)."""
    with HubServer() as running:
        yield running


@pytest.fixture
def hub(server, tiny_files):
    """The local hub with repos `tiny/sd15` and `tiny/animatediff`, plain files for the adapter and base model."""
    server.repos["tiny/sd15"] = dict(tiny_files["sd15"])
    server.repos["tiny/animatediff"] = dict(tiny_files["mm"])
    server.files["360Adapter_flow_v1.ckpt"] = tiny_files["adapter"]["360Adapter_flow_v1.ckpt"]
    server.files["personal.safetensors"] = tiny_files["base"]["personal.safetensors"]
    return server
