"""Quality presets (issue 27): `quality` names a (solver, steps) per model; fields a request gives win."""

import pytest

from models.generation_params import (
    QUALITIES,
    SD15_PRESETS,
    SOLVERS,
    TINY_PRESETS,
    GenerationDefaults,
    SamplingPreset,
    resolve_sampling,
)
from models.registry import RegistryError, load_registry, tiny_spec


def registry_with(tmp_path, entry: str):
    path = tmp_path / "models.yaml"
    path.write_text(
        "models:\n  rv:\n    sd15: /w/sd15\n    motion_module: /w/mm.ckpt\n    adapter: /w/a.ckpt\n" + entry
    )
    return load_registry(path)


def test_every_model_has_a_preset_per_quality_with_a_known_solver():
    for presets in (SD15_PRESETS, TINY_PRESETS):
        assert tuple(presets) == QUALITIES
        assert all(p.scheduler in SOLVERS for p in presets.values())
        # draft is the cheapest, high the most thorough
        assert presets["draft"].steps < presets["standard"].steps < presets["high"].steps


@pytest.mark.parametrize(
    ("quality", "scheduler", "steps", "expected"),
    [
        (None, None, None, ("ddim", 25)),  # nothing named: the published sampling, as before presets
        (None, None, 40, ("ddim", 40)),
        (None, "unipc", None, ("unipc", 25)),
        ("draft", None, None, (SD15_PRESETS["draft"].scheduler, SD15_PRESETS["draft"].steps)),
        ("high", None, None, (SD15_PRESETS["high"].scheduler, SD15_PRESETS["high"].steps)),
        ("draft", "ddim", None, ("ddim", SD15_PRESETS["draft"].steps)),  # each given field wins on its own
        ("draft", None, 30, (SD15_PRESETS["draft"].scheduler, 30)),
        ("standard", "unipc", 12, ("unipc", 12)),
    ],
)
def test_given_fields_win_over_the_preset_and_the_preset_over_the_defaults(quality, scheduler, steps, expected):
    assert resolve_sampling(quality, scheduler, steps, SD15_PRESETS, GenerationDefaults()) == expected


def test_the_model_spec_resolves_with_its_own_presets_and_defaults(tmp_path):
    tiny = tiny_spec()
    assert tiny.quality_presets == TINY_PRESETS
    assert tiny.sampling(None, None, None) == ("ddim", 4)  # the tiny model's default steps
    assert tiny.sampling("draft", None, None) == (TINY_PRESETS["draft"].scheduler, TINY_PRESETS["draft"].steps)
    spec = registry_with(tmp_path, "    presets: {draft: {scheduler: ddim, steps: 7}}\n").get("rv")
    assert spec.quality_presets == {**SD15_PRESETS, "draft": SamplingPreset(scheduler="ddim", steps=7)}
    assert spec.sampling("draft", None, None) == ("ddim", 7)
    assert spec.sampling("high", None, None) == (SD15_PRESETS["high"].scheduler, SD15_PRESETS["high"].steps)
    with pytest.raises(ValueError, match="unknown quality 'best'; choose one of draft, standard, high"):
        spec.sampling("best", None, None)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("    presets: {draft: {scheduler: euler, steps: 7}}\n", "scheduler"),
        ("    presets: {fast: {scheduler: ddim, steps: 7}}\n", "fast"),
        ("    presets: {draft: {scheduler: ddim, steps: 0}}\n", "steps"),
        ("    presets: {high: {scheduler: ddim, steps: 60}}\n    limits: {max_steps: 50}\n", "preset's steps exceed"),
    ],
)
def test_bad_presets_in_a_registry_say_what_to_fix(tmp_path, entry, message):
    with pytest.raises(RegistryError, match=message):
        registry_with(tmp_path, entry)
