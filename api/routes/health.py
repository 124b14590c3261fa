"""Liveness, readiness (which dependency is down, never exception text) and Prometheus metrics."""

import hmac
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException
from fastapi.responses import JSONResponse, Response

from api.deps import Svc
from api.schemas import Health, Ready, Unavailable

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def health() -> Health:
    """The API process answers."""
    return Health()


@router.get(
    "/readyz", response_model=Ready, responses={503: {"model": Unavailable, "description": "A dependency is down."}}
)
def ready(svc: Svc) -> JSONResponse:
    """Whether Redis and the storage answer; 503 names the ones that do not (never exception text)."""
    down = []
    for name, check in (("redis", svc.redis.ping), ("storage", svc.storage.ping)):
        try:
            check()
        except Exception:  # any backend failure means "not ready": named, never a 500, no internals shown
            down.append(name)
    if down:
        body = Unavailable(detail=f"{', '.join(down)} unreachable", down=down)
        return JSONResponse(body.model_dump(), 503, {"Retry-After": "5"})
    return JSONResponse(Ready().model_dump())


@router.get("/metrics", include_in_schema=False)
def prometheus_metrics(svc: Svc, authorization: Annotated[str | None, Header()] = None) -> Response:
    token = svc.settings.metrics_token
    if token:
        presented = (authorization or "").removeprefix("Bearer ").encode()
        if not hmac.compare_digest(presented, token.encode()):
            raise HTTPException(401, "send the metrics token as `Authorization: Bearer <token>`")
    return svc.metrics.response()
