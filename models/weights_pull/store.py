"""The models folder pull writes: one folder per component, the registry that names them, the checksum lock.

<models dir>/
  registry.yaml        the model registry (relative paths), the default one workers and the CLI read
  models.lock.json     sha256 of every file pulled (published, or recorded on first use)
  sd15/ mm-sd-v14/ ... installed components, each appearing whole (renamed in from .partial/)
  .partial/<name>/     downloads in progress (same filesystem, so installing is a rename)
  .locks/              file locks: one pull per component at a time, one writer of the shared files
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from filelock import FileLock

from models.registry import PULLED_REGISTRY
from models.weights_pull.errors import PullError

if TYPE_CHECKING:
    from models.weights_pull.catalogue import Component

LOCK_FILE = "models.lock.json"
STAGING = ".partial"
LOCKS = ".locks"
RESERVED_NAMES = frozenset({PULLED_REGISTRY, LOCK_FILE, STAGING, LOCKS})  # the store's own: never a component folder
HUB_METADATA = ".cache"  # what huggingface_hub keeps beside a local_dir download; never installed


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class ModelsDir:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().resolve()

    # ------------------------------------------------------------------ layout
    def component_dir(self, name: str) -> Path:
        return self.root / name

    def staging_dir(self, name: str) -> Path:
        return self.root / STAGING / name

    @property
    def registry_path(self) -> Path:
        return self.root / PULLED_REGISTRY

    @property
    def lock_path(self) -> Path:
        return self.root / LOCK_FILE

    def _file_lock(self, name: str) -> FileLock:
        (self.root / LOCKS).mkdir(parents=True, exist_ok=True)
        return FileLock(self.root / LOCKS / f"{name}.lock")

    def component_lock(self, component: Component) -> FileLock:
        """Held while a component downloads: a second pull waits, then finds it installed."""
        return self._file_lock(f"component-{component.name}")

    @contextmanager
    def _shared_files(self) -> Iterator[None]:
        with self._file_lock("shared-files"):
            yield

    # ------------------------------------------------------------------ installed components
    def is_installed(self, component: Component) -> bool:
        """Every file there with its published (or recorded) size; cheap, no hashing (`verify` hashes)."""
        folder = self.component_dir(component.name)
        recorded = self.recorded(component.name)
        for file in component.files:
            path = folder / file.path
            size = file.size if file.size is not None else recorded.get(file.path, {}).get("size")
            if not path.is_file() or (size is not None and path.stat().st_size != size):
                return False
        return True

    def installed_bytes(self, name: str) -> int:
        folder = self.component_dir(name)
        return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0

    def install(self, component: Component) -> Path:
        """Rename the verified staging folder into place: a worker sees the whole component or nothing."""
        staging, final = self.staging_dir(component.name), self.component_dir(component.name)
        shutil.rmtree(staging / HUB_METADATA, ignore_errors=True)
        old = None
        if final.exists():  # a damaged earlier install being replaced
            old = self.root / STAGING / f"{component.name}.old-{uuid.uuid4().hex[:8]}"
            final.rename(old)
        staging.rename(final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def remove_component(self, name: str) -> None:
        folder = self.component_dir(name)
        if folder.exists():
            doomed = self.root / STAGING / f"{name}.rm-{uuid.uuid4().hex[:8]}"
            folder.rename(doomed)  # gone from view at once; the bytes go after
            shutil.rmtree(doomed, ignore_errors=True)
        shutil.rmtree(self.staging_dir(name), ignore_errors=True)

    # ------------------------------------------------------------------ checksum lock (trust on first use)
    def _read_lock(self) -> dict:
        try:
            return json.loads(self.lock_path.read_text())
        except FileNotFoundError:
            return {"components": {}}
        except (OSError, ValueError) as exc:
            raise PullError(f"checksum lock {self.lock_path} is unreadable ({exc}); restore it or delete it") from exc

    def recorded(self, component: str) -> dict[str, dict]:
        """path -> {sha256, size, source, trust} of a component's files as first pulled."""
        return self._read_lock()["components"].get(component, {})

    def record(self, component: str, path: str, entry: dict) -> None:
        with self._shared_files():
            lock = self._read_lock()
            lock["components"].setdefault(component, {})[path] = entry
            _write_atomically(self.lock_path, json.dumps(lock, indent=2, sort_keys=True) + "\n")

    # ------------------------------------------------------------------ registry
    def registry_entries(self) -> dict[str, dict]:
        try:
            raw = yaml.safe_load(self.registry_path.read_text()) or {}
        except FileNotFoundError:
            return {}
        except (OSError, yaml.YAMLError) as exc:
            raise PullError(f"registry {self.registry_path} is unreadable ({exc}); fix or delete it") from exc
        return dict(raw.get("models") or {})

    def _write_registry(self, entries: dict[str, dict]) -> None:
        header = "# Written by `dvd360 models pull`; paths are relative to this folder.\n"
        _write_atomically(self.registry_path, header + yaml.safe_dump({"models": entries}, sort_keys=True))

    def set_registry_entry(self, name: str, entry: dict) -> None:
        if self.registry_entries().get(name) == entry:
            return  # nothing to write: a pull at start on a read-only mount of an installed folder stays read-only
        with self._shared_files():
            entries = self.registry_entries()
            entries[name] = entry
            self._write_registry(entries)

    def drop_registry_entry(self, name: str) -> bool:
        with self._shared_files():
            entries = self.registry_entries()
            if entries.pop(name, None) is None:
                return False
            self._write_registry(entries)
            return True

    def components_in_use(self) -> set[str]:
        """Component folders the registry's entries point into (relative paths: their first part)."""
        used = set()
        for entry in self.registry_entries().values():
            for value in entry.values():
                parts = Path(str(value)).parts
                if parts and not Path(str(value)).is_absolute() and isinstance(value, str):
                    used.add(parts[0])
        return used
