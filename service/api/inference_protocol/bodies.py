"""The bodies of the Open Inference Protocol (KServe's v2 REST API): server and model metadata, the
inference request and response with their tensors, and the protocol's error `{"error": "..."}`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from ...inputs.fields import StrictModel, integer
from ..bodies import error_responses
from .tensors import DTYPES

Datatype = Literal[tuple(DTYPES)]  # type: ignore[valid-type]
Parameters = Annotated[
    dict[str, Any] | None,
    Field(description="The protocol's parameters: names and values (strings, numbers, booleans)."),
]
TensorData = Annotated[
    Any,
    WithJsonSchema(
        {
            "description": "The values in row-major order, flat or nested: numbers, booleans, or strings "
            "(BYTES). Left out when the tensor's bytes follow the JSON header (binary_data_size)."
        }
    ),
]


class MetadataTensor(BaseModel):
    name: str
    datatype: Datatype
    shape: list[int] = Field(description="-1: any size (the first: the images of the request).")


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class ModelMetadata(BaseModel):
    name: str
    platform: str = Field(description='"pytorch".')
    inputs: list[MetadataTensor] = Field(description="Every input is optional but those of the images.")
    outputs: list[MetadataTensor]
    parameters: dict[str, Any] = Field(
        description="What the entry is: `operation` (sample, encode or decode) of the served `model`, "
        "its `family`."
    )


class RequestInput(StrictModel):
    name: str = Field(max_length=64)
    shape: list[integer(ge=0, le=2**31)] = Field(max_length=8)
    datatype: Datatype
    parameters: Parameters = None
    data: TensorData = None


class RequestOutput(StrictModel):
    name: str = Field(max_length=64)
    parameters: Parameters = None


class InferenceRequest(StrictModel):
    """An inference request. Its inputs are the model's (GET /v2/models/{name}): a model's names,
    datatypes and shapes depend on the model, and a tensor's data holds as many values as its shape
    says. With the binary tensor data extension the body is this JSON, Inference-Header-Content-Length
    bytes long, followed by the binary inputs' bytes."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "inputs": [
                        {"name": "seed", "shape": [2], "datatype": "INT64", "data": [42, 43]},
                        {"name": "label", "shape": [1], "datatype": "INT64", "data": [7]},
                    ]
                }
            ]
        },
    )

    id: str | None = Field(None, max_length=256)
    parameters: Parameters = None
    inputs: list[RequestInput] = Field(max_length=64)
    outputs: list[RequestOutput] | None = Field(None, max_length=64)


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: Datatype
    parameters: dict[str, Any] | None = None
    data: TensorData = None


class InferenceResponse(BaseModel):
    model_name: str
    id: str | None = None
    outputs: list[ResponseOutput]


class InferenceError(BaseModel):
    """The protocol's error: every error answer under /v2 has it. An invalid input is a 400."""

    error: str


def inference_error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries documenting the protocol's error answers."""
    return error_responses(InferenceError, "application/json", *statuses)
