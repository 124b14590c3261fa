"""The architecture's import rules, checked on the source. Layers, each importing only those below it:

    models/ (the model and media)  <-  core/ (the service core)  <-  api/ and worker/ (peers)  <-  cli/

models/ knows no web, queue or storage library; api/ imports nothing from worker/ (nor worker/ from api/); no
module imports itself back through others (no import circle, counting imports inside functions too); and a
worker-side process makes its Redis client, job store and storage in one place (worker/runtime.py)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "core", "api", "worker", "cli")
ALLOWED = {
    "models": {"models"},
    "core": {"models", "core"},
    "api": {"models", "core", "api"},
    "worker": {"models", "core", "worker"},
    "cli": set(PACKAGES),
}
FORBIDDEN_IN_MODELS = {"fastapi", "starlette", "celery", "kombu", "boto3", "botocore", "redis"}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _type_checking_only(tree: ast.AST) -> set[int]:
    """The nodes under `if TYPE_CHECKING:` (annotations only: never imported when the code runs)."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(inner) for statement in node.body for inner in ast.walk(statement)}
    return skipped


def _imports(path: Path) -> set[str]:
    """Every module name an import statement in the file names when it runs (at any depth: inside functions too)."""
    names = set()
    tree = ast.parse(path.read_text(), filename=str(path))
    skipped = _type_checking_only(tree)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}  # `from pkg import module`
    return names


def _project_imports(path: Path) -> set[str]:
    return {name for name in _imports(path) if name in MODULES}


def test_each_layer_imports_only_the_layers_below_it() -> None:
    offenders = {
        module: sorted(target for target in _project_imports(path) if target.split(".")[0] not in ALLOWED[top])
        for module, path in MODULES.items()
        if (top := module.split(".")[0])
    }
    assert {m: t for m, t in offenders.items() if t} == {}


def test_api_imports_nothing_from_the_worker() -> None:
    for module, path in MODULES.items():
        if module.startswith("api"):
            assert not any(name.split(".")[0] == "worker" for name in _imports(path)), module


def test_models_never_import_web_queue_or_storage_libraries() -> None:
    offenders = {
        module: sorted({name.split(".")[0] for name in _imports(path)} & FORBIDDEN_IN_MODELS)
        for module, path in MODULES.items()
        if module.startswith("models")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_import_circle() -> None:
    graph = {module: _project_imports(path) - {module} for module, path in MODULES.items()}
    # a module importing its own package's __init__ is Python's package mechanics, not a circle
    graph = {m: {t for t in targets if not m.startswith(t + ".")} for m, targets in graph.items()}
    circles, state = [], {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                circles.append([*trail[trail.index(target) :], target])
            elif target not in state:
                visit(target, [*trail, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert circles == []


def test_worker_runtime_objects_are_made_in_one_place() -> None:
    """Redis clients, job stores and storages of worker-side processes come from worker/runtime.py."""
    makers = ("Redis.from_url", "Redis(", "JobStore(", "JobStore.from_settings", "make_storage(")
    for module, path in MODULES.items():
        if module.startswith("worker") and module != "worker.runtime":
            text = path.read_text()
            assert not any(maker in text for maker in makers), module


def test_torch_free_modules_stay_torch_free() -> None:
    """What the API process imports (core/ and the torch-free parts of models/) must not import torch at module
    level: the API image has no torch."""
    for rel in [
        "models/__init__.py",
        "models/registry.py",
        "models/errors.py",
        "models/generation_params.py",
        *map(str, (ROOT / "models/media").glob("*.py")),
        *map(str, (ROOT / "core").glob("*.py")),
        *map(str, (ROOT / "api").rglob("*.py")),
    ]:
        path = ROOT / rel
        module_level = {
            (n.names[0].name if isinstance(n, ast.Import) else n.module or "").split(".")[0]
            for n in ast.parse(path.read_text()).body
            if isinstance(n, ast.Import | ast.ImportFrom)
        }
        assert "torch" not in module_level and "diffusers" not in module_level, rel
