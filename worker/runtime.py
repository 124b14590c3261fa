"""A worker-side process's runtime objects, made once per process and in this one place: its settings, its Redis
client and job store, its result storage, its model cache and the deployment's signing key. The generation task,
the webhook deliverer, the warm-up at start and the reaper all take them from here."""

from __future__ import annotations

from functools import cache, cached_property

import redis
from celery import Celery

from core.jobs import JobStore
from core.settings import Settings, get_settings
from core.signing import signing_key
from core.storage import LocalStorage, S3Storage, make_storage
from worker.pipeline_cache import PipelineCache


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis = redis.Redis.from_url(settings.redis_url, socket_timeout=10)  # no command here blocks for long
        tasks = Celery("dvd360", broker=settings.redis_url)  # sends by task name: queue messages, webhooks
        self.store = JobStore.from_settings(self.redis, tasks, settings)
        self.storage: LocalStorage | S3Storage = make_storage(settings)

    @cached_property
    def signing_key(self) -> str:
        """Webhooks are always signed: the configured key, else the deployment's generated one."""
        return signing_key(self.redis, self.settings.signing_key)

    @cached_property
    def models(self) -> PipelineCache:
        """The pipelines this process keeps loaded (built on first use: the webhook deliverer never loads one)."""
        from models.media.flow_extract import FlowBackend
        from models.registry import load_registry
        from worker.predictor import PipelineOptions

        s = self.settings
        backend = FlowBackend(s.flow_backend, s.raft_weights, s.device)
        return PipelineCache(load_registry(s.model_registry), s.device, s.pipeline_cache_gb,
                             PipelineOptions.from_settings(s), backend)  # fmt: skip


@cache
def runtime() -> Runtime:
    return Runtime(get_settings())


def warm_up(names: list[str]) -> None:
    """Load the named pipelines, and RAFT when it measures flow, before the first job (a bad file fails here)."""
    models = runtime().models
    for name in names:
        models.get(name)
    if models.flow_backend.name == "raft":
        models.flow_backend.raft()
