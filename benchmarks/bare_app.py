"""The benchmark's yardstick: a bare FastAPI endpoint doing one Redis round trip (bench_service.py)."""

from __future__ import annotations

import os

import redis
from fastapi import FastAPI

app = FastAPI()
client = redis.Redis.from_url(os.environ["DVD360_REDIS_URL"])


@app.get("/ping")
def ping() -> dict:
    return {"value": client.get("bench:ping")}
