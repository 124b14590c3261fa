"""API keys against a real Redis server: hashed at rest, required when auth is on, and per-key isolation."""

from __future__ import annotations

import json

import pytest
import redis
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from api.auth import hash_key
from tests.conftest import free_port
from worker.settings import Settings

pytestmark = pytest.mark.integration


def test_keys_are_required_hashed_and_isolated(redis_url, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DVD360_REDIS_URL", redis_url)
    redis.Redis.from_url(redis_url).flushdb()
    from cli.main import app as cli
    from worker.settings import get_settings

    get_settings.cache_clear()
    keys = [CliRunner().invoke(cli, ["keys", "create", who]).output.strip() for who in ("alice", "bob")]
    get_settings.cache_clear()
    stored = redis.Redis.from_url(redis_url)
    digest = hash_key(keys[0])
    assert json.loads(stored.get(f"dvd360:apikey:{digest[:16]}")) == {"name": "alice", "sha256": digest}
    strings = [k for k in stored.scan_iter() if stored.type(k) == b"string"]
    assert not any(keys[0].encode() in (stored.get(k) or b"") + k for k in strings)  # only the hash

    api = TestClient(create_app(Settings(redis_url=redis_url, data_dir=tmp_path, auth=True)))
    body = {"prompt": "x", "num_frames": 8, "height": 64, "width": 128, "steps": 1}
    assert api.post("/generate", json=body).status_code == 401
    assert api.post("/generate", json=body, headers={"X-API-Key": "wrong"}).status_code == 401
    job = api.post("/generate", json=body, headers={"X-API-Key": keys[0]})
    assert job.status_code == 202
    job_id = job.json()["id"]
    assert api.get(f"/jobs/{job_id}", headers={"Authorization": f"Bearer {keys[0]}"}).status_code == 200
    assert api.get(f"/jobs/{job_id}", headers={"X-API-Key": keys[1]}).status_code == 404
    assert api.post(f"/jobs/{job_id}/cancel", headers={"X-API-Key": keys[1]}).status_code == 404
    assert api.get("/jobs", headers={"X-API-Key": keys[1]}).json()["total"] == 0


def test_redis_down_answers_503_with_retry_after(tmp_path) -> None:
    api = TestClient(
        create_app(Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0", data_dir=tmp_path, auth=False))
    )
    answer = api.get("/jobs")
    assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
    assert api.get("/readyz").status_code == 503
