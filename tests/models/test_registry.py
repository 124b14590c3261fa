"""The model registry file: names -> local weight paths, with errors that say what to fix."""

import pytest

from models.registry import RegistryError, load_registry


def test_no_file_gives_the_builtin_tiny_model():
    registry = load_registry(None)
    assert registry.names() == ["tiny"]
    assert registry.get("tiny").builtin == "tiny"


def test_relative_paths_resolve_against_the_file_and_missing_weights_are_reported(tmp_path):
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "mm.ckpt").write_bytes(b"x")
    path = tmp_path / "models.yaml"
    path.write_text(
        "models:\n"
        "  realistic:\n"
        "    sd15: weights/sd15\n"
        "    motion_module: weights/mm.ckpt\n"
        "    adapter: /nonexistent/adapter.ckpt\n"
    )
    registry = load_registry(path)
    assert registry.names() == ["realistic", "tiny"]
    spec = registry.get("realistic")
    assert spec.motion_module == tmp_path / "weights" / "mm.ckpt"
    assert [str(p) for p in spec.missing_paths()] == [str(tmp_path / "weights" / "sd15"), "/nonexistent/adapter.ckpt"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models: [", "not valid YAML"),
        ("- a\n- b\n", "mapping with a `models:`"),
        ("models:\n  x: 3\n", "entry 'x' must be a mapping"),
        ("models:\n  x:\n    sd15: /a\n", "are all required"),
        ("models:\n  x:\n    folder: /a\n    sd15: /b\n", "exactly one of"),
        ("models:\n  x:\n    folder: /a\n    colour: red\n", "colour"),
        ("models:\n  Bad Name:\n    folder: /a\n", "Bad Name"),
    ],
)
def test_malformed_files_say_what_to_fix(tmp_path, text, message):
    path = tmp_path / "models.yaml"
    path.write_text(text)
    with pytest.raises(RegistryError, match=message):
        load_registry(path)


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(KeyError, match="available: tiny"):
        load_registry(None).get("sdxl")


def test_missing_file_is_a_registry_error(tmp_path):
    with pytest.raises(RegistryError, match="cannot read model registry"):
        load_registry(tmp_path / "nope.yaml")


def test_native_size_and_size_limits_per_model(tmp_path):
    """The native size is the default spatial window: 512 x 1024 for SD-1.5 models (up to 2048 x 4096 accepted,
    in windows), 64 x 128 for the tiny model (up to 256 x 512); a registry may set its own."""
    from models.loading import load_pipeline

    path = tmp_path / "models.yaml"
    path.write_text(
        "models:\n"
        "  sd:\n    folder: /w/sd\n"
        "  big:\n    folder: /w/big\n    native_height: 768\n"
        "  odd:\n    folder: /w/odd\n    native_height: 700\n"
    )
    with pytest.raises(RegistryError, match="native_height"):
        load_registry(path)
    path.write_text(path.read_text().replace("  odd:\n    folder: /w/odd\n    native_height: 700\n", ""))
    registry = load_registry(path)
    assert registry.get("sd").native_size == (512, 1024) and registry.get("sd").generation_limits.max_height == 2048
    assert registry.get("big").native_size == (768, 1536)
    tiny = registry.get("tiny")
    assert tiny.native_size == (64, 128) and tiny.generation_limits.max_height == 256
    assert load_pipeline(tiny).native_size == (64, 128)
