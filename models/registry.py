"""The model registry: base-model names -> local weight paths (a YAML file). Torch-free: the API lists models.

Example file:

    models:
      realistic-vision:
        description: Realistic Vision 5.1 + AnimateDiff v1 + 360-Adapter
        sd15: /weights/stable-diffusion-v1-5           # Stable Diffusion 1.5 diffusers folder
        base_checkpoint: /weights/realisticVisionV51_v20Novae.safetensors   # optional personalised T2I
        motion_module: /weights/mm_sd_v14.ckpt
        adapter: /weights/360Adapter_flow_v1.ckpt
        defaults: {num_frames: 16, steps: 25}          # optional: what a request gets for fields it leaves out
        limits: {max_frames: 128, max_height: 2048}    # optional: the largest request this model accepts
        native_height: 512                             # optional: the size its UNet was trained at (width 2x)
        presets: {draft: {scheduler: unipc, steps: 8}} # optional: (solver, steps) per quality, over the defaults
      my-saved-model:
        folder: /weights/my-saved-model                # a folder written by Panorama360Pipeline.save_pretrained

The base model named `tiny` (small random weights, built in code) is always present unless the file
defines its own `tiny`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from models.generation_params import (
    MIN_HEIGHT,
    NATIVE_HEIGHT,
    SD15_PRESETS,
    TINY_DEFAULTS,
    TINY_LIMITS,
    TINY_NATIVE_HEIGHT,
    TINY_PRESETS,
    GenerationDefaults,
    GenerationLimits,
    Quality,
    QualityPresets,
    SamplingPreset,
    resolve_sampling,
)
from models.yaml_files import read_yaml

TINY_MODEL_NAME = "tiny"
PULLED_REGISTRY = "registry.yaml"  # the file `dvd360 models pull` writes in its models folder


def default_models_dir() -> Path:
    """Where `dvd360 models pull` installs unless told otherwise: the per-user data folder."""
    from platformdirs import user_data_path

    return user_data_path("dvd360") / "models"


def default_registry_path(models_dir: Path) -> Path | None:
    """The registry pull wrote in `models_dir`, when there is one: the default registry beside `tiny`."""
    path = Path(models_dir) / PULLED_REGISTRY
    return path if path.is_file() else None


class RegistryError(ValueError):
    """The registry file is missing, unreadable or malformed; the message says what to fix."""


class ModelSpec(BaseModel):
    """Where one base model's weights live. Exactly one source: `builtin`, `folder`, or the component paths."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    description: str = ""
    builtin: Literal["tiny"] | None = None
    folder: Path | None = None
    sd15: Path | None = None
    base_checkpoint: Path | None = None
    motion_module: Path | None = None
    adapter: Path | None = None
    # None: the tiny model's small CPU defaults for `builtin: tiny`, the published 360DVD sampling otherwise
    defaults: GenerationDefaults | None = None
    limits: GenerationLimits | None = None
    # None: 64 for `builtin: tiny`, 512 otherwise (SD-1.5); above it, outputs are denoised in spatial windows
    native_height: int | None = Field(None, ge=MIN_HEIGHT, multiple_of=MIN_HEIGHT)
    # quality levels whose (solver, steps) differ from the defaults (the tiny model's or SD-1.5's presets)
    presets: dict[Quality, SamplingPreset] = Field(default_factory=dict)

    @property
    def generation_defaults(self) -> GenerationDefaults:
        return self.defaults or (TINY_DEFAULTS if self.builtin == "tiny" else GenerationDefaults())

    @property
    def generation_limits(self) -> GenerationLimits:
        return self.limits or (TINY_LIMITS if self.builtin == "tiny" else GenerationLimits())

    @property
    def native_size(self) -> tuple[int, int]:
        """(height, width) in pixels the model generates at natively: its spatial windows' default size."""
        height = self.native_height or (TINY_NATIVE_HEIGHT if self.builtin == "tiny" else NATIVE_HEIGHT)
        return height, 2 * height

    @property
    def quality_presets(self) -> QualityPresets:
        return {**(TINY_PRESETS if self.builtin == "tiny" else SD15_PRESETS), **self.presets}

    def sampling(self, quality: str | None, scheduler: str | None, steps: int | None) -> tuple[str, int]:
        """(solver, steps) for a request to this model: the fields it gives, else its quality's preset, else the
        defaults (`models.generation_params.resolve_sampling`)."""
        return resolve_sampling(quality, scheduler, steps, self.quality_presets, self.generation_defaults)

    @model_validator(mode="after")
    def _one_source(self) -> ModelSpec:
        components = self.sd15 is not None or self.motion_module is not None or self.adapter is not None
        sources = sum([self.builtin is not None, self.folder is not None, components])
        if sources != 1:
            raise ValueError(
                f"model {self.name!r}: give exactly one of `builtin`, `folder`, or `sd15` + `motion_module` + `adapter`"
            )
        if components and (self.sd15 is None or self.motion_module is None or self.adapter is None):
            raise ValueError(f"model {self.name!r}: `sd15`, `motion_module` and `adapter` are all required")
        if self.base_checkpoint is not None and not components:
            raise ValueError(f"model {self.name!r}: `base_checkpoint` needs `sd15`, `motion_module`, `adapter`")
        d, lim = self.generation_defaults, self.generation_limits
        if d.num_frames > lim.max_frames or d.height > lim.max_height or d.steps > lim.max_steps:
            raise ValueError(f"model {self.name!r}: its `defaults` exceed its `limits`")
        if any(p.steps > lim.max_steps for p in self.quality_presets.values()):
            raise ValueError(f"model {self.name!r}: a quality preset's steps exceed its `limits`")
        return self

    def weight_paths(self) -> list[Path]:
        """Local paths this model needs (empty for the built-in model)."""
        paths = [self.folder, self.sd15, self.base_checkpoint, self.motion_module, self.adapter]
        return [p for p in paths if p is not None]

    def missing_paths(self) -> list[Path]:
        return [p for p in self.weight_paths() if not p.exists()]


class ModelRegistry(BaseModel):
    model_config = ConfigDict(frozen=True)

    models: dict[str, ModelSpec]

    def names(self) -> list[str]:
        return sorted(self.models)

    def get(self, name: str) -> ModelSpec:
        try:
            return self.models[name]
        except KeyError:
            raise KeyError(f"unknown base model {name!r}; available: {', '.join(self.names())}") from None

    def __contains__(self, name: object) -> bool:
        return name in self.models


def tiny_spec() -> ModelSpec:
    return ModelSpec(name=TINY_MODEL_NAME, description="Built-in tiny model (random weights)", builtin="tiny")


def load_registry(path: str | Path | None) -> ModelRegistry:
    """Read the registry file; `None` gives the registry holding only the built-in tiny model.

    Relative weight paths are resolved against the file's folder so a registry can travel with its weights.
    """
    models = {TINY_MODEL_NAME: tiny_spec()}
    if path is None:
        return ModelRegistry(models=models)
    path = Path(path)
    raw = read_yaml(path, "model registry", RegistryError)
    if not isinstance(raw, dict) or not isinstance(raw.get("models"), dict):
        raise RegistryError(f"model registry {path} must be a mapping with a `models:` mapping of names")
    for name, entry in raw["models"].items():
        if not isinstance(entry, dict):
            raise RegistryError(f"model registry {path}: entry {name!r} must be a mapping")
        entry = {k: (_resolve(path.parent, v) if k in _PATH_FIELDS and v is not None else v) for k, v in entry.items()}
        try:
            models[str(name)] = ModelSpec(name=str(name), **entry)
        except ValidationError as exc:
            raise RegistryError(f"model registry {path}: entry {name!r}: {exc}") from exc
    return ModelRegistry(models=models)


_PATH_FIELDS = {"folder", "sd15", "base_checkpoint", "motion_module", "adapter"}


def _resolve(base: Path, value: object) -> Path:
    p = Path(str(value)).expanduser()
    return p if p.is_absolute() else (base / p).resolve()
