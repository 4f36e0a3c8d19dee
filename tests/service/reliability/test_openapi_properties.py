"""Property-based: schemathesis generates requests from /openapi.json (valid ones within the
published bounds, and invalid ones) against a real server; every answer must match the schema's
status codes, media types and bodies, schema-invalid requests must be refused, and no answer may be
a 500. The documented 503 (queue full) and 504 (a timeout_ms of a few ms) are answers, not errors.

A schema-valid request may be refused only for what the schema says in words, because it depends
on the model the request names (its classes, latent layers, image size, latent shapes, kind: the
refusal names the model, or the image it was sent) or spans fields (guidance needs a label, latents
are the top layers in order; the Open Inference Protocol's tensors are the model's, each holding as
many values as its shape says).
Bounded: EXAMPLES per operation, on a server of its own whose requests ask for at most 4 images
(the bounds come from the settings, so the generated requests stay small)."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error, positive_data_acceptance  # noqa: E402
from schemathesis.generation import GenerationMode  # noqa: E402

from ..conftest import RunningServer, running_server  # noqa: E402

EXAMPLES = 20  # x 19 operations: about 380 requests

# Refusals of schema-valid requests that the schema states in words.
IN_WORDS = ("model '", "guidance needs a label", "seed + n - 1", "latents must be the top layers in order")
TENSORS = "/v2/models/{name}/infer"

ANSWERS: dict[int, int] = {}  # status -> count, printed at the end (pytest -s)


@pytest.fixture(scope="module")
def small(model_dir) -> RunningServer:
    with running_server(model_dir, max_images_per_request=4, max_batch_delay_ms=5) as server:
        yield server


@pytest.fixture(scope="module")
def api_schema(small: RunningServer):
    yield schemathesis.openapi.from_url(small.url + "/openapi.json")
    print(
        f"schemathesis: {sum(ANSWERS.values())} requests, answers by status {dict(sorted(ANSWERS.items()))}"
    )


schema = schemathesis.pytest.from_fixture("api_schema")


def error_message(body: dict) -> str:
    """An error answer's message, in any of the service's three shapes."""
    error = body.get("error")
    return body.get("detail") or (error["message"] if isinstance(error, dict) else error) or ""


def refused_as_the_schema_says(path: str, body: dict) -> bool:
    if path == TENSORS or body.get("type") == "/problems/invalid-image":
        return True
    return any(words in error_message(body) for words in IN_WORDS)


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
        plain = case.path.startswith(("/v1/", "/v2"))  # OpenAI's and the protocol's shapes
        assert response.headers["content-type"] == [
            "application/json" if plain else "application/problem+json"
        ]
    if case.meta.generation.mode is GenerationMode.POSITIVE and response.status_code in (400, 422):
        assert refused_as_the_schema_says(case.path, response.json()), (case.path, case.body, response.text)
