"""The architecture's import rules, checked on the source: models/ knows no web, queue or S3 library."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_IN_MODELS = {"fastapi", "starlette", "celery", "kombu", "boto3", "botocore", "redis", "api", "worker"}


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_models_never_import_web_queue_or_storage_libraries():
    offenders = {
        str(p.relative_to(ROOT)): sorted(_imported_roots(p) & FORBIDDEN_IN_MODELS)
        for p in (ROOT / "models").rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_torch_free_modules_stay_torch_free():
    """What the API process imports from models/ must not import torch at module level."""
    for rel in [
        "models/__init__.py",
        "models/registry.py",
        "models/errors.py",
        *map(str, (ROOT / "models/media").glob("*.py")),
    ]:
        path = ROOT / rel
        module_level = {
            (n.names[0].name if isinstance(n, ast.Import) else n.module or "").split(".")[0]
            for n in ast.parse(path.read_text()).body
            if isinstance(n, ast.Import | ast.ImportFrom)
        }
        assert "torch" not in module_level and "diffusers" not in module_level, rel
