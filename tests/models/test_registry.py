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
