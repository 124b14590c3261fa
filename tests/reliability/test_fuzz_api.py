"""Schemathesis against our own OpenAPI spec (the app in process on a real Redis server, auth off so requests
reach validation): valid and invalid requests of every operation, multipart bodies with random files included.
Whatever arrives, the answer is never a 5xx, and it is what the document says: a documented status code, a documented
content type, a body that matches the documented schema, the documented headers."""

from __future__ import annotations

import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from core.settings import Settings
from tests.reliability.harness import write_figures

pytestmark = pytest.mark.integration
EXAMPLES = 250  # per operation; operations with few distinct inputs stop early: over 1000 cases in all
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


def _fuzz(operation, statuses: list[int]):
    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def call(case) -> None:
        response = case.call()
        statuses.append(response.status_code)
        case.validate_response(response, checks=CHECKS)  # raises with every check that failed

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
