"""The FastAPI application: builds the shared clients once, then assembles middleware and one router per resource
(api/routes/). Nothing here handles a request itself."""

import logging
import secrets

import redis
from celery import Celery
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from api import openapi
from api.deps import Services
from api.event_hub import EventHub
from api.idempotency import IdempotencyKeys
from api.limits import KeyLimits, StreamSlots
from api.log_redaction import redact_access_log
from api.metrics import Metrics
from api.request_limits import RequestLimitsMiddleware
from api.routes import events, files, flows, health, jobs, models
from api.routes.docs import register_docs
from api.routes.page import register_page
from api.schemas import Error, FieldError
from api.uploads import Uploads
from core.jobs import JobStore, queue_name
from core.settings import Settings, get_settings
from core.signing import signing_key
from core.storage import LocalStorage, make_storage
from models.registry import load_registry

log = logging.getLogger(__name__)


def _link_key(client: redis.Redis, configured: str) -> str:
    """The key that signs download links: the deployment's shared one, so every API replica (and a restart)
    accepts the links another made; a per-process key only while Redis is unreachable at start."""
    try:
        return signing_key(client, configured)
    except redis.RedisError:
        return secrets.token_hex(32)


def build_services(settings: Settings) -> Services:
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5)
    settings = settings.model_copy(update={"signing_key": _link_key(client, settings.signing_key)})
    storage = make_storage(settings)
    registry = load_registry(settings.model_registry)
    rates = {
        "write": settings.rate_limit,
        "read": settings.read_rate_limit,
        "auth_failure": settings.auth_failure_limit,
    }
    celery = Celery("dvd360", broker=settings.redis_url)
    return Services(
        settings=settings,
        redis=client,
        store=JobStore.from_settings(client, celery, settings),
        storage=storage,
        uploads=Uploads(client, storage, settings.upload_ttl_s),
        registry=registry,
        limits=KeyLimits(client, settings.redis_url, rates, settings.max_active_jobs),
        idempotency=IdempotencyKeys(client, settings.idempotency_ttl_s),
        metrics=Metrics(client, [queue_name(n) for n in registry.names()]),
        celery=celery,
    )


async def redis_down(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": "the job store is unavailable; retry shortly"}, 503, {"Retry-After": "5"})


async def internal_error(_: Request, exc: Exception) -> JSONResponse:
    """A bug answers in the same shape as every other error (the stack goes to the log, not to the client)."""
    log.error("unhandled error", exc_info=exc)
    return JSONResponse({"detail": "internal error (logged for the operator); retry, or report it"}, 500)


async def field_errors(_: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422 list, without the values sent: they may be huge or not JSON at all (NaN, Infinity)."""
    errors = [FieldError(loc=list(e["loc"]), msg=e["msg"], type=e["type"]) for e in exc.errors()]
    return JSONResponse(Error(detail=errors).model_dump(), 422)


def create_app(settings: Settings | None = None) -> FastAPI:
    svc = build_services(settings or get_settings())
    settings = svc.settings
    # /docs comes from local Swagger UI files (api/routes/docs.py): FastAPI's own pages load it from a CDN
    app = FastAPI(
        title="dvd360",
        description="Text (and motion) to 360° video (360DVD).",
        version="0.1.0",
        docs_url=None,
        redoc_url=None,
        generate_unique_id_function=openapi.operation_id,
        responses=openapi.errors(*openapi.ON_EVERY_ROUTE),
    )
    openapi.install(app)
    app.state.services = svc
    app.state.event_hub = EventHub(
        settings.redis_url, StreamSlots(settings.max_streams_per_key), settings.key_recheck_s
    )
    redact_access_log()

    app.add_middleware(RequestLimitsMiddleware, upload_bytes=settings.max_upload_mb * 2**20)
    if origins := [o.strip() for o in settings.cors_origins.split(",") if o.strip()]:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=[
                "X-API-Key",
                "Authorization",
                "Content-Type",
                "Idempotency-Key",
                "Last-Event-ID",
                "Prefer",
                "Cancel-After",
            ],
            expose_headers=["Location", "Retry-After", "Preference-Applied"],
        )
    app.middleware("http")(svc.metrics.middleware)
    app.add_exception_handler(redis.ConnectionError, redis_down)
    app.add_exception_handler(redis.TimeoutError, redis_down)
    app.add_exception_handler(RequestValidationError, field_errors)
    app.add_exception_handler(Exception, internal_error)

    for router in (jobs.router, events.router, flows.router, models.router, health.router):
        app.include_router(router)
    if isinstance(svc.storage, LocalStorage):
        app.include_router(files.router)
    register_page(app)
    register_docs(app)
    return app
