"""The catalogue of pullable models: components (files from their sources) and the models built from them."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from models.weights_pull.errors import PullError
from models.weights_pull.store import RESERVED_NAMES
from models.yaml_files import read_yaml

CATALOGUE = Path(__file__).resolve().parents[1] / "catalogue.yaml"
NAME = r"^[a-z0-9][a-z0-9._-]{0,63}$"  # the registry's model-name rule, so a catalogue name is a valid registry name
GDRIVE_URL = "https://drive.usercontent.google.com/download?id={id}&export=download&confirm=t"


class HubRepo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    repo: str
    revision: str = "main"


class CatalogueFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    size: int | None = Field(None, ge=0)
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    urls: tuple[str, ...] = ()
    gdrive: str | None = None

    @field_validator("path")
    @classmethod
    def _inside_the_component(cls, value: str) -> str:
        parts = PurePosixPath(value).parts
        if not parts or value.startswith("/") or ".." in parts or parts[0].startswith("."):
            raise ValueError(f"file path {value!r} must be relative, inside the component, not hidden")
        return value

    def plain_urls(self) -> list[str]:
        """HTTPS sources in the order they are tried (after the Hub)."""
        return [*self.urls, *([GDRIVE_URL.format(id=self.gdrive)] if self.gdrive else [])]


class Component(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME)
    description: str = ""
    licence: str = ""
    hf: HubRepo | None = None
    entry: str = "."
    # The environment variable whose value goes as a bearer token to the file URLs on `token_hosts`, over HTTPS only
    token_env: str | None = None
    token_hosts: tuple[str, ...] = ()
    files: tuple[CatalogueFile, ...] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _not_the_stores_own(cls, value: str) -> str:
        if value in RESERVED_NAMES:
            raise ValueError(f"component name {value!r} is reserved: the models folder keeps its own file there")
        return value

    @model_validator(mode="after")
    def _tokens_go_to_named_hosts(self) -> Component:
        if self.token_env is not None and not self.token_hosts:
            raise ValueError(f"component {self.name!r}: token_env needs token_hosts, the hosts that may receive it")
        return self

    @model_validator(mode="after")
    def _every_file_has_a_source(self) -> Component:
        for file in self.files:
            if self.hf is None and not file.plain_urls():
                raise ValueError(f"component {self.name!r}: {file.path} has no source (hf, urls or gdrive)")
        if self.entry != "." and self.entry not in {f.path for f in self.files}:
            raise ValueError(f"component {self.name!r}: entry {self.entry!r} is none of its files")
        return self

    def bearer_headers(self, url: str) -> dict[str, str]:
        """The Authorization header for `url`: the token_env token, only over HTTPS to one of token_hosts."""
        token = os.environ.get(self.token_env) if self.token_env else None
        parts = urlsplit(url)
        if not token or parts.scheme != "https" or (parts.hostname or "") not in {h.lower() for h in self.token_hosts}:
            return {}
        return {"Authorization": f"Bearer {token}"}


REGISTRY_FIELDS = ("sd15", "base_checkpoint", "motion_module", "adapter")


class CatalogueModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME)
    description: str = ""
    sd15: str
    base_checkpoint: str | None = None
    motion_module: str
    adapter: str

    def components(self) -> dict[str, str]:
        """Registry field -> component name."""
        return {f: getattr(self, f) for f in REGISTRY_FIELDS if getattr(self, f) is not None}


class Catalogue(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    components: dict[str, Component]
    models: dict[str, CatalogueModel]

    @model_validator(mode="after")
    def _models_name_known_components(self) -> Catalogue:
        for model in self.models.values():
            unknown = sorted(set(model.components().values()) - set(self.components))
            if unknown:
                raise ValueError(f"model {model.name!r} names unknown components: {', '.join(unknown)}")
        return self

    def model(self, name: str) -> CatalogueModel:
        try:
            return self.models[name]
        except KeyError:
            available = ", ".join(sorted(self.models))
            raise PullError(f"no model {name!r} in the catalogue; available: {available}") from None


def load_catalogue(path: str | Path | None = None) -> Catalogue:
    """The catalogue file (the one shipped with the project when `path` is None)."""
    path = Path(path) if path is not None else CATALOGUE
    raw = read_yaml(path, "catalogue", PullError)
    if not isinstance(raw, dict):
        raise PullError(f"catalogue {path} must be a mapping with `components:` and `models:`")
    try:
        return Catalogue(
            components={k: {**v, "name": k} for k, v in (raw.get("components") or {}).items()},
            models={k: {**v, "name": k} for k, v in (raw.get("models") or {}).items()},
        )
    except (ValidationError, TypeError) as exc:
        raise PullError(f"catalogue {path} is malformed: {exc}") from exc
