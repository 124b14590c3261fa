"""`dvd360 models list|pull|verify|rm`: the published weights in one command, checked, into the models folder
whose registry `serve`, `generate` and the workers read by default."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

models_app = typer.Typer(help="Published weights: list, pull (checked downloads), verify, rm.", no_args_is_help=True)

Dir = Annotated[Path | None, typer.Option("--dir", help="Models folder (default: DVD360_MODELS_DIR, else per-user).")]
CatalogueOption = Annotated[
    Path | None, typer.Option("--catalogue", help="Catalogue YAML (default: DVD360_CATALOGUE, else the shipped one).")
]


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")


def puller(folder: Path | None, catalogue: Path | None, progress: bool = False):
    """A Puller on the chosen folder and catalogue, with the settings' retry policy."""
    from core.settings import get_settings
    from models.weights_pull.catalogue import load_catalogue
    from models.weights_pull.pull import Puller
    from models.weights_pull.sources import Retry
    from models.weights_pull.store import ModelsDir

    settings = get_settings()
    return Puller(
        catalogue=load_catalogue(catalogue or settings.catalogue),
        store=ModelsDir(folder or settings.models_dir),
        retry=Retry(attempts=settings.pull_retries + 1, backoff_s=settings.pull_backoff_s),
        say=lambda line: typer.echo(line, err=True),
        **({"progress": _tqdm_progress} if progress else {}),
    )


def _tqdm_progress(label: str, total: int | None, initial: int):
    from tqdm import tqdm

    bar = tqdm(total=total, initial=initial, desc=label, unit="B", unit_scale=True, unit_divisor=1024, leave=False)

    def advance(n: int) -> None:
        bar.update(n)
        if total is not None and bar.n >= total:
            bar.close()

    return advance


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(1)


def _served_models(folder: Path | None) -> None:
    """The registry's models (what `serve`, `generate` and the workers offer, and GET /models lists): each one's
    request defaults and limits, from the same ModelSpec the API reads."""
    from core.settings import get_settings
    from models.registry import RegistryError, default_registry_path, load_registry

    path = default_registry_path(folder) if folder is not None else get_settings().model_registry
    try:
        registry = load_registry(path)
    except RegistryError as exc:
        raise _fail(exc) from exc
    typer.echo(f"served models ({f'registry {path}' if path else 'no registry: the built-in model only'}):")
    row = "{:<14} {:<10} {:>6} {:>10} {:>5} {:>8} {:>4}  {}".format
    typer.echo(row("NAME", "WEIGHTS", "FRAMES", "SIZE (WxH)", "STEPS", "GUIDANCE", "FPS", "LIMITS"))
    for name in registry.names():
        spec = registry.get(name)
        d, lim = spec.generation_defaults, spec.generation_limits
        weights = "built-in" if spec.builtin else ("installed" if not spec.missing_paths() else "missing")
        presets = ", ".join(f"{q} {p.scheduler} x{p.steps}" for q, p in spec.quality_presets.items())
        limits = (
            f"at most {lim.max_frames} frames, {lim.max_height} px high, {lim.max_steps} steps; native "
            f"{spec.native_size[1]}x{spec.native_size[0]}; {presets}"
        )
        size, guidance = f"{d.width}x{d.height}", f"{d.guidance_scale:g}"
        typer.echo(row(name, weights, d.num_frames, size, d.steps, guidance, d.fps, limits))


@models_app.command("list")
def list_models(folder: Dir = None, catalogue: CatalogueOption = None) -> None:
    """The models served now (the built-in `tiny` and the registry's, with each one's request defaults and limits),
    then the catalogue's models: whether each is installed, and sizes (download / on disk)."""
    from models.weights_pull.errors import PullError

    _served_models(folder)
    typer.echo("")
    try:
        p = puller(folder, catalogue)
        rows = []
        for model in sorted(p.catalogue.models.values(), key=lambda m: m.name):
            known, complete, on_disk = p.sizes(model)
            download = _size(known) + ("" if complete else "+?")
            licences = sorted({p.catalogue.components[c].licence for c in model.components().values()} - {""})
            rows.append((model.name, p.status(model), download, _size(on_disk), model.description, licences))
    except PullError as exc:
        raise _fail(exc) from exc
    typer.echo(f"catalogue (`dvd360 models pull NAME` installs into {p.store.root}):")
    typer.echo(f"{'NAME':<14} {'STATUS':<10} {'DOWNLOAD':>10} {'ON DISK':>9}  DESCRIPTION")
    for name, status, download, on_disk, description, _ in rows:
        typer.echo(f"{name:<14} {status:<10} {download:>10} {on_disk:>9}  {description}")
    licences = sorted({lic for *_, model_licences in rows for lic in model_licences})
    if licences:
        typer.echo("licences: " + "; ".join(licences))


@models_app.command("pull")
def pull(
    names: Annotated[list[str] | None, typer.Argument(help="Catalogue models (default: DVD360_PULL_MODELS).")] = None,
    folder: Dir = None,
    catalogue: CatalogueOption = None,
    jobs: Annotated[int, typer.Option(min=1, max=16, help="Components downloaded at once.")] = 3,
    configured: Annotated[
        bool, typer.Option("--configured", help="Pull DVD360_PULL_MODELS; nothing when it is empty (deployments).")
    ] = False,
) -> None:
    """Download, check (sha256) and install models, then write their registry entries. Resumable."""
    from core.settings import get_settings
    from models.weights_pull.errors import PullError

    names = names or [n.strip() for n in get_settings().pull_models.split(",") if n.strip()]
    if not names:
        if configured:
            typer.echo("DVD360_PULL_MODELS is empty: nothing to pull")
            return
        raise typer.BadParameter("name at least one model (see `dvd360 models list`) or set DVD360_PULL_MODELS")
    try:
        p = puller(folder, catalogue, progress=True)
        p.jobs = jobs
        p.pull(names)
    except PullError as exc:
        raise _fail(exc) from exc
    typer.echo(f"registry: {p.store.registry_path} (the default for `dvd360 serve` and `dvd360 generate`)")


@models_app.command("verify")
def verify(
    names: Annotated[list[str] | None, typer.Argument(help="Models (default: every installed one).")] = None,
    folder: Dir = None,
    catalogue: CatalogueOption = None,
) -> None:
    """Re-hash installed files against the published or recorded sha256; exit 1 naming any that differ."""
    from models.weights_pull.errors import PullError

    try:
        p = puller(folder, catalogue)
        names = names or [n for n in p.store.registry_entries() if n in p.catalogue.models]
        problems = p.verify(names)
    except PullError as exc:
        raise _fail(exc) from exc
    for problem in problems:
        typer.echo(f"BAD {problem}", err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"verified: {', '.join(names) or 'nothing installed'}")


@models_app.command("rm")
def rm(
    name: Annotated[str, typer.Argument(help="An installed model.")],
    folder: Dir = None,
    catalogue: CatalogueOption = None,
) -> None:
    """Remove a model's registry entry, then the components no other installed model uses."""
    from models.weights_pull.errors import PullError

    try:
        removed = puller(folder, catalogue).remove(name)
    except PullError as exc:
        raise _fail(exc) from exc
    typer.echo(f"{name} removed; deleted components: {', '.join(removed) or 'none (shared with other models)'}")


def pull_configured_models() -> None:
    """`DVD360_PULL_MODELS` at worker start: pull what is missing (installed ones cost a stat each)."""
    from core.settings import get_settings

    if get_settings().pull_models.strip():
        pull(names=None, folder=None, catalogue=None, jobs=3, configured=True)
        get_settings.cache_clear()  # the pulled registry now exists: the default registry changes
