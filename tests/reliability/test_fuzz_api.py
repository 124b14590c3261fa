"""Schemathesis against our own OpenAPI spec (the app in process on a real Redis server, auth off so requests
reach validation): valid and invalid requests of every operation, multipart bodies with random files included.
Whatever arrives, the answer is never a 5xx."""

from __future__ import annotations

import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, given, settings

from api.app import create_app
from tests.reliability.harness import write_figures
from worker.settings import Settings

pytestmark = pytest.mark.integration
EXAMPLES = 250  # per operation; operations with few distinct inputs stop early: over 1000 cases in all


def _fuzz(operation, statuses: list[int]):
    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def call(case) -> None:
        response = case.call()
        statuses.append(response.status_code)
        assert response.status_code < 500, (case.method, case.path, case.body, response.text[:500])

    return call


def test_no_request_gets_a_server_error(redis_url, tmp_path) -> None:
    redis.Redis.from_url(redis_url).flushdb()
    app = create_app(
        Settings(
            redis_url=redis_url,
            data_dir=tmp_path,
            auth=False,
            rate_limit="100000/second",
            max_active_jobs=100000,
            max_upload_mb=1,
        )
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    statuses: dict[str, list[int]] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        _fuzz(operation, statuses.setdefault(operation.label, []))()
    answers = [status for codes in statuses.values() for status in codes]
    write_figures(
        "fuzz",
        {"fuzz_cases": len(answers), "operations": len(statuses), "5xx": sum(s >= 500 for s in answers),
         "4xx": sum(400 <= s < 500 for s in answers)},
    )  # fmt: skip
    assert len(answers) >= 1000 and len(statuses) >= 9
