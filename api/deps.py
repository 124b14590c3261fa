"""The clients every route shares (built once per app by `api.app.create_app`) and the authentication dependencies.

Routes declare what they need: `Svc` for the shared clients, `Writer` for a caller allowed to submit (write rate),
`Reader` for a caller reading its own jobs (read rate). The API key comes as `X-API-Key` or as a bearer token: both
are security schemes in the OpenAPI document."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import redis
from celery import Celery
from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from api.auth import key_owner
from api.idempotency import IdempotencyKeys
from api.limits import KeyLimits
from api.metrics import Metrics
from api.uploads import Uploads
from core.jobs import JobStore
from core.settings import Settings
from core.storage import LocalStorage, S3Storage
from models.registry import ModelRegistry

API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key (`dvd360 keys create NAME`).")
BEARER = HTTPBearer(auto_error=False, description="The same API key as `Authorization: Bearer <key>`.")


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


@dataclass(frozen=True)
class Caller:
    """Who is calling; `still_valid()` says whether the key still authenticates (long streams and waits ask it again,
    so a revoked key loses what it had open)."""

    owner: str
    still_valid: Callable[[], bool]


def services(request: Request) -> Services:
    return request.app.state.services


Svc = Annotated[Services, Depends(services)]


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def authenticated(
    request: Request,
    svc: Svc,
    x_api_key: Annotated[str | None, Security(API_KEY)] = None,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
) -> Caller:
    """The owner of the presented key ("anonymous" with auth off). Failed attempts count per client address, so
    guessing keys is throttled even though an unknown key has no owner to rate-limit."""
    if not svc.settings.auth:
        return Caller("anonymous", lambda: True)
    key = x_api_key or (bearer.credentials if bearer else None)
    who = key_owner(svc.redis, key) if key else None
    if who is None:
        svc.limits.check_rate("auth_failure", client_address(request))
        raise HTTPException(
            401, "missing or unknown API key: send it in the X-API-Key header", {"WWW-Authenticate": "Bearer"}
        )
    return Caller(who, lambda: key_owner(svc.redis, key) == who)


def writer(svc: Svc, caller: Annotated[Caller, Depends(authenticated)]) -> Caller:
    svc.limits.check_rate("write", caller.owner)
    return caller


def reader(svc: Svc, caller: Annotated[Caller, Depends(authenticated)]) -> Caller:
    svc.limits.check_rate("read", caller.owner)
    return caller


Writer = Annotated[Caller, Depends(writer)]
Reader = Annotated[Caller, Depends(reader)]
