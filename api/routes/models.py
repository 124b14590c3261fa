"""`GET /models`: the base models this deployment offers, whether their weights are installed, and each model's
request defaults and limits (what the page fills its form from)."""

from fastapi import APIRouter

from api.deps import Svc

router = APIRouter(tags=["models"])


@router.get("/models")
def list_models(svc: Svc) -> dict:
    models = []
    for name in svc.registry.names():
        spec = svc.registry.get(name)
        installed = not spec.missing_paths()
        models.append(
            {
                "name": name,
                "description": spec.description,
                "installed": installed,
                "available": installed,
                "defaults": spec.generation_defaults.model_dump(),
                "limits": spec.generation_limits.model_dump(),
            }
        )
    return {"models": models}
