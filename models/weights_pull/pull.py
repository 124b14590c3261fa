"""Pulling, verifying and removing catalogue models in a models folder. Each component is downloaded once (a
file lock), checked (sha256: published, or recorded on first use), then renamed into place whole; a model's
registry entry is written only when all its components are installed, and removed before anything is deleted."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from models.weights_pull.catalogue import Catalogue, CatalogueModel, Component
from models.weights_pull.errors import PullError
from models.weights_pull.sources import (
    UNDECLARED_MAX_BYTES,
    Progress,
    Retry,
    SizeLimit,
    disk_full,
    fetch,
    sha256_file,
)
from models.weights_pull.store import ModelsDir


def _no_progress(label: str, total: int | None, initial: int) -> Callable[[int], None]:
    return lambda n: None


@dataclass
class Puller:
    catalogue: Catalogue
    store: ModelsDir
    retry: Retry = field(default_factory=Retry)
    jobs: int = 3  # components fetched at once
    progress: Progress = _no_progress
    say: Callable[[str], None] = print
    max_undeclared_bytes: int = UNDECLARED_MAX_BYTES  # a file without a size in the catalogue stops there

    # ------------------------------------------------------------------ pull
    def pull(self, names: list[str]) -> None:
        models = [self.catalogue.model(n) for n in dict.fromkeys(names)]
        wanted = list(dict.fromkeys(c for m in models for c in m.components().values()))
        with ThreadPoolExecutor(max(1, min(self.jobs, len(wanted)))) as pool:
            outcomes = dict(zip(wanted, pool.map(self._try_component, wanted), strict=True))
        failed = {name: error for name, error in outcomes.items() if error is not None}
        for model in models:
            if not set(model.components().values()) & set(failed):
                self.store.set_registry_entry(model.name, self.registry_entry(model))
                self.say(f"{model.name}: installed, registry entry in {self.store.registry_path}")
        if failed:
            raise PullError("\n".join(f"{name}: {error}" for name, error in failed.items()))

    def _try_component(self, name: str) -> str | None:
        try:
            self.ensure(self.catalogue.components[name])
            return None
        except PullError as exc:
            return str(exc)
        except OSError as exc:  # e.g. a read-only mount (a worker container) or no space left for the lock file
            return f"cannot write {exc.filename or self.store.root}: {exc.strerror}; pull where the folder is writable"

    def ensure(self, component: Component) -> None:
        if self.store.is_installed(component):  # no lock needed to see it: installs are renames
            self.say(f"{component.name}: already installed")
            return
        with self.store.component_lock(component):
            if self.store.is_installed(component):  # another pull finished it while we waited
                self.say(f"{component.name}: installed by another pull")
                return
            staging = self.store.staging_dir(component.name)
            staging.mkdir(parents=True, exist_ok=True)
            self._check_space(component, staging)
            first_use = []
            for file in component.files:
                target = staging / file.path
                source = "kept from an earlier run"
                if not target.is_file():
                    limit = SizeLimit.of(file, self.max_undeclared_bytes)
                    source = fetch(component, file, target, self.retry, self.progress, limit)
                if self._verify_new(component, file.path, target, source):
                    first_use.append(file.path)
            if first_use:
                self.say(
                    f"{component.name}: no published sha256 for {', '.join(first_use)}; their hashes are now recorded "
                    f"in {self.store.lock_path} (trust on first use: every later pull must match them)"
                )
            self.store.install(component)
            self.say(f"{component.name}: verified and installed in {self.store.component_dir(component.name)}")

    def _check_space(self, component: Component, staging: Path) -> None:
        needed = sum(f.size or 0 for f in component.files if not (staging / f.path).is_file())
        free = shutil.disk_usage(staging).free
        if needed > free:
            raise disk_full(staging, OSError(28, f"needs {needed} bytes, {free} free"))

    def _verify_new(self, component: Component, path: str, target: Path, source: str) -> bool:
        """Refuse a file whose size or hash differs from the published or recorded one; record it otherwise.
        True when this is the file's first use (no hash published or recorded before)."""
        file = next(f for f in component.files if f.path == path)
        recorded = self.store.recorded(component.name).get(path)
        size = target.stat().st_size
        if file.size is not None and size != file.size:
            target.unlink()
            raise PullError(f"{path} from {source}: {size} bytes, the catalogue says {file.size}; nothing installed")
        digest = sha256_file(target)
        expected = file.sha256 or (recorded or {}).get("sha256")
        if expected is not None and digest != expected:
            target.unlink()
            trust = "published" if file.sha256 else f"recorded at first pull in {self.store.lock_path}"
            raise PullError(
                f"{path} from {source}: sha256 {digest} does not match the {trust} {expected}; refused, nothing "
                "installed (a changed or corrupted file; pull again, or delete its lock entry if the change is wanted)"
            )
        self.store.record(
            component.name,
            path,
            {
                "sha256": digest,
                "size": size,
                "source": source,
                "trust": "published" if file.sha256 else "first use",
                "at": (recorded or {}).get("at") or datetime.now(UTC).isoformat(timespec="seconds"),
            },
        )
        return file.sha256 is None and recorded is None

    def registry_entry(self, model: CatalogueModel) -> dict:
        """Paths relative to the models folder, so the folder can move or be mounted elsewhere."""
        entry: dict = {"description": model.description}
        for registry_field, name in model.components().items():
            component = self.catalogue.components[name]
            entry[registry_field] = name if component.entry == "." else f"{name}/{component.entry}"
        return entry

    # ------------------------------------------------------------------ verify, remove, status
    def verify(self, names: list[str]) -> list[str]:
        """Hash every installed file of these models against the published or recorded sha256; the problems."""
        problems = []
        for name in dict.fromkeys(c for n in names for c in self.catalogue.model(n).components().values()):
            component = self.catalogue.components[name]
            recorded = self.store.recorded(name)
            for file in component.files:
                path = self.store.component_dir(name) / file.path
                expected = file.sha256 or recorded.get(file.path, {}).get("sha256")
                if not path.is_file():
                    problems.append(f"{name}/{file.path}: missing")
                elif expected is None:
                    problems.append(f"{name}/{file.path}: no sha256 published or recorded")
                elif (digest := sha256_file(path)) != expected:
                    problems.append(f"{name}/{file.path}: sha256 {digest}, expected {expected}")
                else:
                    self.say(f"{name}/{file.path}: ok")
        return problems

    def remove(self, name: str) -> list[str]:
        """Drop the registry entry first (workers stop seeing it), then components no other entry uses."""
        model = self.catalogue.model(name)
        if not self.store.drop_registry_entry(name):
            raise PullError(f"{name} is not installed in {self.store.root}")
        in_use = self.store.components_in_use()
        removed = [c for c in dict.fromkeys(model.components().values()) if c not in in_use]
        for component in removed:
            self.store.remove_component(component)
        return removed

    def status(self, model: CatalogueModel) -> str:
        names = list(dict.fromkeys(model.components().values()))
        installed = [self.store.is_installed(self.catalogue.components[n]) for n in names]
        if all(installed) and model.name in self.store.registry_entries():
            return "installed"
        if any(installed) or any(self.store.staging_dir(n).exists() for n in names):
            return "partial"
        return "-"

    def sizes(self, model: CatalogueModel) -> tuple[int, bool, int]:
        """(download bytes known from the catalogue or the lock, whether that is all of them, bytes on disk)."""
        known, complete = 0, True
        for name in dict.fromkeys(model.components().values()):
            recorded = self.store.recorded(name)
            for file in self.catalogue.components[name].files:
                size = file.size if file.size is not None else recorded.get(file.path, {}).get("size")
                known, complete = known + (size or 0), complete and size is not None
        on_disk = sum(self.store.installed_bytes(n) for n in dict.fromkeys(model.components().values()))
        return known, complete, on_disk
