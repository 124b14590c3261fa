"""Liveness, readiness (which dependency is down, never exception text) and Prometheus metrics."""

import hmac
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException
from fastapi.responses import JSONResponse, Response

from api.deps import Svc

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(svc: Svc) -> JSONResponse:
    down = []
    for name, check in (("redis", svc.redis.ping), ("storage", svc.storage.ping)):
        try:
            check()
        except Exception:  # any backend failure means "not ready": named, never a 500, no internals shown
            down.append(name)
    if down:
        body = {"status": "unavailable", "down": down, "reason": f"{', '.join(down)} unreachable"}
        return JSONResponse(body, 503, {"Retry-After": "5"})
    return JSONResponse({"status": "ready"})


@router.get("/metrics", include_in_schema=False)
def prometheus_metrics(svc: Svc, authorization: Annotated[str | None, Header()] = None) -> Response:
    token = svc.settings.metrics_token
    if token:
        presented = (authorization or "").removeprefix("Bearer ").encode()
        if not hmac.compare_digest(presented, token.encode()):
            raise HTTPException(401, "send the metrics token as `Authorization: Bearer <token>`")
    return svc.metrics.response()
