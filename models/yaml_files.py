"""Reading the project's YAML files (model registry, weights catalogue) with errors that say which file and why."""

from __future__ import annotations

from pathlib import Path

import yaml


def read_yaml(path: Path, what: str, error: type[Exception]) -> object:
    """The parsed file; an unreadable or invalid file raises `error` naming `what` (e.g. "model registry") and path."""
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise error(f"{what} {path} is not valid YAML: {exc}") from exc
