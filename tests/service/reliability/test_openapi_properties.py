"""Property-based: schemathesis generates requests from /openapi.json (valid ones within the
published bounds, and invalid ones) against a real server; every answer must match the schema's
status codes, media types and bodies, schema-invalid requests must be refused, and no answer may be
a 500. The documented 503 (queue full) and 504 (a timeout_ms of a few ms) are answers, not errors.
Not checked: that every schema-valid request is accepted, since some rules span fields or models
(guidance needs a label, a temperature list has one value per layer of the model named); the
schema's descriptions state them. Bounded: EXAMPLES per operation."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error, positive_data_acceptance  # noqa: E402

from ..conftest import RunningServer  # noqa: E402

EXAMPLES = 30  # x 11 operations: about 330 requests, well under a minute here


ANSWERS: dict[int, int] = {}  # status -> count, printed at the end (pytest -s)


@pytest.fixture(scope="module")
def api_schema(server: RunningServer):
    yield schemathesis.openapi.from_url(server.url + "/openapi.json")
    print(
        f"schemathesis: {sum(ANSWERS.values())} requests, answers by status {dict(sorted(ANSWERS.items()))}"
    )


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same cases on every run: a failure here is reproducible
    suppress_health_check=list(HealthCheck),
)
def test_generated_requests_get_documented_answers(case) -> None:
    response = case.call_and_validate(excluded_checks=[not_a_server_error, positive_data_acceptance])
    ANSWERS[response.status_code] = ANSWERS.get(response.status_code, 0) + 1
    assert response.status_code not in (500, 502), response.text
    if response.status_code >= 500:
        assert response.headers["content-type"] == ["application/problem+json"]
