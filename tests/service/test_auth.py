"""API keys against a real Redis server: hashed at rest, required when auth is on, and per-key isolation."""

from __future__ import annotations

import json

import pytest
import redis
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from api.auth import hash_key
from core.settings import Settings
from tests.conftest import free_port

pytestmark = pytest.mark.integration


def test_keys_are_required_hashed_and_isolated(redis_url, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DVD360_REDIS_URL", redis_url)
    redis.Redis.from_url(redis_url).flushdb()
    from cli.main import app as cli
    from core.settings import get_settings

    get_settings.cache_clear()
    keys = [CliRunner().invoke(cli, ["keys", "create", who]).output.strip() for who in ("alice", "bob")]
    get_settings.cache_clear()
    stored = redis.Redis.from_url(redis_url)
    digest = hash_key(keys[0])
    record = json.loads(stored.get(f"dvd360:apikey:{digest[:16]}"))
    assert {k: record[k] for k in ("name", "sha256")} == {"name": "alice", "sha256": digest}
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
    ready = api.get("/readyz")
    assert ready.status_code == 503 and ready.json()["down"] == ["redis"]
    assert "Error" not in ready.text and "127.0.0.1" not in ready.text  # which dependency, not its exception text


def cli_in(redis_url: str, monkeypatch, *args: str):
    from cli.main import app as cli
    from core.settings import get_settings

    monkeypatch.setenv("DVD360_REDIS_URL", redis_url)
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(cli, list(args))
    finally:
        get_settings.cache_clear()


def test_one_key_per_name_listed_and_revoked(redis_url, tmp_path, monkeypatch) -> None:
    redis.Redis.from_url(redis_url).flushdb()
    key = cli_in(redis_url, monkeypatch, "keys", "create", "carol").output.strip()
    again = cli_in(redis_url, monkeypatch, "keys", "create", "carol")
    assert again.exit_code == 2 and "already has an API key" in again.output
    listed = cli_in(redis_url, monkeypatch, "keys", "list").output
    assert listed.startswith("carol\t") and key not in listed
    api = TestClient(create_app(Settings(redis_url=redis_url, data_dir=tmp_path, auth=True)))
    assert api.get("/jobs", headers={"X-API-Key": key}).status_code == 200
    assert cli_in(redis_url, monkeypatch, "keys", "revoke", "carol").exit_code == 0
    assert api.get("/jobs", headers={"X-API-Key": key}).status_code == 401
    assert cli_in(redis_url, monkeypatch, "keys", "revoke", "carol").exit_code == 2
    assert cli_in(redis_url, monkeypatch, "keys", "create", "carol").exit_code == 0  # the name is free again


def test_failed_authentication_is_throttled_per_address(redis_url, tmp_path) -> None:
    redis.Redis.from_url(redis_url).flushdb()
    settings = Settings(redis_url=redis_url, data_dir=tmp_path, auth=True, auth_failure_limit="3/minute")
    api = TestClient(create_app(settings))
    answers = [api.get("/jobs", headers={"X-API-Key": f"guess-{i}"}).status_code for i in range(5)]
    assert answers == [401, 401, 401, 429, 429]
    refused = api.get("/jobs", headers={"X-API-Key": "guess-5"})
    assert "failed authentications" in refused.json()["detail"] and int(refused.headers["retry-after"]) >= 1


def test_metrics_can_require_a_bearer_token(redis_url, tmp_path) -> None:
    api = TestClient(create_app(Settings(redis_url=redis_url, data_dir=tmp_path, auth=True, metrics_token="s3cret")))
    assert api.get("/metrics").status_code == 401
    assert api.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    scraped = api.get("/metrics", headers={"Authorization": "Bearer s3cret"})
    assert scraped.status_code == 200 and "dvd360_http_requests_total" in scraped.text
