"""The Open Inference Protocol (KServe's v2 REST API), so that the tools of Triton, KServe and
MLServer (`tritonclient`, an InferenceService's probes, perf_analyzer-style load) use the service as
they use any model server: GET /v2 (server metadata), /v2/health/live, /v2/health/ready,
/v2/models/{name} (model metadata), /v2/models/{name}/ready, and POST /v2/models/{name}/infer.

Each served model is three entries of the protocol (`entries`): `{name}` samples, `{name}.encode`
encodes images into their latents, `{name}.decode` decodes latents into images (a super-resolution
model: encode only; cascades are not entries). An inference request's tensors become the items of
the matching operation, checked per image by the same code as /sample's, /encode's and /decode's
bodies, and run on the same batchers as every other request: the same seeds and settings give the
same images as /sample. Errors have the protocol's shape `{"error": "..."}` (service/errors.py).

Inputs, one row per image (a one-row input applies to every image; `seed` [s] gives image i the
seed s + i, as /sample): `seed` INT64, `label` INT64 (-1: the unconditional prior) or BYTES (a class
name), `temperature` FP32, `guidance` FP32 rows (mean, variance); encode's `image` UINT8
(n, H, W, C); decode's `z_0` .. `z_{k-1}` FP32, the top k latent layers, as encode gives them.
"""

from __future__ import annotations

import functools
from typing import Any

from fastapi import APIRouter, Request, Response

from ...state import Phase, ServiceState
from ..routing import DirectModelRoute, ModelRequest, service_state
from .bodies import (
    InferenceResponse,
    ModelMetadata,
    ServerMetadata,
    inference_error_responses,
)
from .entries import entries, entry_for
from .inference import infer_input, output_tensors
from .tensors import HEADER_LENGTH, response_body

router = APIRouter(tags=["open inference protocol"])
infer_router = APIRouter(route_class=DirectModelRoute, tags=["open inference protocol"])

EXTENSIONS = ["binary_tensor_data"]


ERRORS = inference_error_responses(400, 404, 408, 413, 415, 503, 504)


def empty(answer: str) -> dict[str, Any]:
    """A health answer: the status is the answer, the body is empty (the protocol's)."""
    return {"description": answer}


@router.get("/v2", response_model=ServerMetadata, summary="Server metadata")
async def server_metadata(request: Request) -> ServerMetadata:
    return ServerMetadata(name="vdvae-serve", version=request.app.version, extensions=EXTENSIONS)


@router.get(
    "/v2/health/live",
    summary="Live: 200 while the process serves",
    response_class=Response,
    responses={200: empty("live")},
)
async def live() -> Response:
    return Response(status_code=200)


@router.get(
    "/v2/health/ready",
    summary="Ready: 200 once every model is loaded and warmed up",
    response_class=Response,
    responses={200: empty("ready"), 400: empty("not ready: loading, warming up, or draining")},
)
async def ready(request: Request) -> Response:
    return Response(status_code=200 if service_state(request).phase is Phase.READY else 400)


@router.get("/v2/models/{name}", response_model=ModelMetadata, responses=ERRORS, summary="Model metadata")
async def model_metadata(name: str, request: Request) -> ModelMetadata:
    svc = service_state(request)
    if (refusal := svc.refusal()) is not None:
        raise refusal
    return entry_for(svc, name).metadata


@router.get(
    "/v2/models/{name}/ready",
    summary="Model ready",
    response_class=Response,
    responses={
        200: empty("ready"),
        400: empty("not ready: the service is loading, warming up, or draining"),
        **inference_error_responses(404),
    },
)
async def model_ready(name: str, request: Request) -> Response:
    svc = service_state(request)
    if svc.phase is not Phase.READY:
        return Response(status_code=400)
    entry_for(svc, name)
    return Response(status_code=200)


def write_bounds(schema: dict[str, Any], state: ServiceState) -> None:
    """The names of the protocol's models, on the paths that take one (openapi.install_openapi)."""
    names = sorted(entries(state.registry))
    for path, operations in schema["paths"].items():
        if names and path.startswith("/v2/models/{name}"):
            for operation in operations.values():
                for parameter in operation.get("parameters", ()):
                    if parameter["name"] == "name":
                        parameter["schema"]["enum"] = names


def request_body() -> dict[str, Any]:
    """infer's body (read by the route: FastAPI sees no parameters) and its path's model name. The
    binary tensor data extension's bodies are described in words: a schema cannot say where the
    JSON header ends."""
    schema = {"$ref": "#/components/schemas/InferenceRequest"}
    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "title": "Name"}}
    return {
        "parameters": [name],
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
    }


@infer_router.post(
    "/v2/models/{name}/infer",
    summary="Inference: sample, encode or decode, batched with every other request",
    response_model=InferenceResponse,
    responses={
        200: {
            "content": {"application/octet-stream": {}},
            "description": "JSON; with binary outputs, the JSON header (Inference-Header-Content-Length "
            "bytes) and then their bytes",
        },
        **ERRORS,
    },
    openapi_extra=request_body(),
)
async def infer(request: ModelRequest) -> Response:
    """The entry's operation on the request's images (GET /v2/models/{name}: its inputs and outputs).

    With the binary tensor data extension (tritonclient's default), the body is this JSON,
    `Inference-Header-Content-Length` bytes long, then the bytes of each input whose parameters give
    its `binary_data_size`, in order; outputs asked for with `binary_data` (or all, with the request's
    `binary_data_output`) come back the same way."""
    name = request.path_params["name"]
    build = functools.partial(infer_input, name, request.headers.get(HEADER_LENGTH))
    inference = await request.parse(build)
    entry = inference.entry
    results = await request.run(entry.op, entry.model, inference.items, inference.timeout_ms)
    tensors = output_tensors(entry, inference.items, results)
    header: dict[str, Any] = {"model_name": entry.name}
    if inference.request.id is not None:
        header["id"] = inference.request.id
    body, headers = response_body(
        header, [(name, tensors[name], binary) for name, binary in inference.outputs]
    )
    return Response(body, headers=headers)
