"""The clients every route shares (built once per app by `api.app.create_app`) and the authentication dependencies.

Routes declare what they need: `Svc` for the shared clients, `Writer` for a caller allowed to submit (write rate),
`Reader` for a caller reading its own jobs (read rate)."""

from dataclasses import dataclass
from typing import Annotated

import redis
from celery import Celery
from fastapi import Depends, Header, HTTPException, Request

from api.auth import key_owner, presented_key
from api.idempotency import IdempotencyKeys
from api.limits import KeyLimits
from api.metrics import Metrics
from api.uploads import Uploads
from models.registry import ModelRegistry
from worker.jobs import JobStore
from worker.settings import Settings
from worker.storage import LocalStorage, S3Storage


@dataclass(frozen=True)
class Services:
    settings: Settings
    redis: redis.Redis
    store: JobStore
    storage: LocalStorage | S3Storage
    uploads: Uploads
    registry: ModelRegistry
    limits: KeyLimits
    idempotency: IdempotencyKeys
    metrics: Metrics
    celery: Celery


def services(request: Request) -> Services:
    return request.app.state.services


Svc = Annotated[Services, Depends(services)]


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def authenticated(
    request: Request,
    svc: Svc,
    x_api_key: Annotated[str | None, Header()] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> str:
    """The owner of the presented key ("anonymous" with auth off). Failed attempts count per client address, so
    guessing keys is throttled even though an unknown key has no owner to rate-limit."""
    if not svc.settings.auth:
        return "anonymous"
    key = presented_key(x_api_key, authorization)
    who = key_owner(svc.redis, key) if key else None
    if who is None:
        svc.limits.check_rate("auth_failure", client_address(request))
        raise HTTPException(
            401, "missing or unknown API key: send it in the X-API-Key header", {"WWW-Authenticate": "Bearer"}
        )
    return who


def writer(svc: Svc, who: Annotated[str, Depends(authenticated)]) -> str:
    svc.limits.check_rate("write", who)
    return who


def reader(svc: Svc, who: Annotated[str, Depends(authenticated)]) -> str:
    svc.limits.check_rate("read", who)
    return who


Writer = Annotated[str, Depends(writer)]
Reader = Annotated[str, Depends(reader)]
