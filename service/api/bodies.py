"""The response bodies more than one endpoint family answers with: images with their seeds and
labels, the RFC 9457 problem an error answer is, and OpenAI's error shape that errors under /v1/
take instead (service/errors.py builds both). Each family's own bodies are in its bodies.py.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Base64Image(BaseModel):
    b64_json: str = Field(description="base64 PNG.")
    seed: int


class SampledImage(Base64Image):
    label: int | None = Field(
        description="The class label the image was drawn with (given, or from its seed under the "
        "model's label rule); null: the unconditional prior."
    )


class ImageResponse(BaseModel):
    """OpenAI-style image list."""

    created: int = Field(description="Unix time of the response.")
    model: str
    data: list[SampledImage]


class Problem(BaseModel):
    """RFC 9457 problem details (application/problem+json)."""

    type: str = Field(examples=["/problems/deadline-exceeded"])
    title: str
    status: int
    detail: str
    instance: str
    request_id: str | None = None
    errors: list[dict[str, Any]] | None = Field(
        None, description="422 only: each invalid field (loc, msg, type)."
    )


# What an error status means, where it needs saying.
ERROR_DESCRIPTIONS = {
    504: "Deadline exceeded: the request's deadline (timeout_ms, else the service's request_timeout_s) "
    "passed before it was computed. By design, not a fault of the service: a deadline of a few "
    "milliseconds gets it.",
}


def error_responses(
    body: type[BaseModel], media_type: str, *statuses: int
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries documenting error answers of this body and media type."""
    schema = {"$ref": f"#/components/schemas/{body.__name__}"}
    return {
        s: {
            "model": body,
            "content": {media_type: {"schema": schema}},
            **({"description": ERROR_DESCRIPTIONS[s]} if s in ERROR_DESCRIPTIONS else {}),
        }
        for s in statuses
    }


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries documenting problem+json answers."""
    return error_responses(Problem, "application/problem+json", *statuses)


# What a model endpoint may answer besides its result.
MODEL_ERRORS = problem_responses(400, 404, 408, 413, 415, 422, 503, 504)


class OpenAIErrorObject(BaseModel):
    message: str = Field(description="What went wrong, and what would be accepted.")
    type: str = Field(
        description="invalid_request_error (4xx), authentication_error (401) or server_error (5xx)."
    )
    param: str | None = Field(description="The request field at fault, if one is.")
    code: str | None = Field(
        description="The kind of error: the slug of its problem page with underscores (model_not_found, "
        "invalid_input, deadline_exceeded, ...; GET /problems/{slug} with hyphens describes it)."
    )


class OpenAIError(BaseModel):
    """OpenAI's error shape: every error answer under /v1/ has it (its SDKs raise typed errors from it).
    An invalid field is a 400 there, as in OpenAI's API."""

    error: OpenAIErrorObject


def openai_error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries documenting OpenAI-shaped error answers."""
    return error_responses(OpenAIError, "application/json", *statuses)
