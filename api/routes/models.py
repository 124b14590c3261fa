"""`GET /models`: the base models this deployment offers, whether their weights are installed, and each model's
request defaults and limits (what the page fills its form from)."""

from fastapi import APIRouter

from api.deps import Svc
from api.schemas import Model, ModelList

router = APIRouter(tags=["models"])


@router.get("/models", response_model=ModelList)
def list_models(svc: Svc) -> ModelList:
    models = []
    for name in svc.registry.names():
        spec = svc.registry.get(name)
        installed = not spec.missing_paths()
        models.append(
            Model(
                name=name,
                description=spec.description,
                installed=installed,
                available=installed,
                defaults=spec.generation_defaults,
                # what this server accepts: the model's limits within the server's own height cap
                limits=spec.generation_limits.model_copy(
                    update={"max_height": min(spec.generation_limits.max_height, svc.settings.max_height)}
                ),
                native_size=spec.native_size,
                presets=spec.quality_presets,
            )
        )
    return ModelList(models=models)
