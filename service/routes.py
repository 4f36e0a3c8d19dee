"""The HTTP endpoints. Each model endpoint reads its body and turns it into per-image items
(bodies.py -> registry -> validation.py; inline for small bodies, else on the parsing thread:
parsing.py), queues them on the (model, operation) batcher, waits for the results (context.py:
deadline and disconnect), and encodes the answer: JSON with base64 PNGs by default, the PNG itself
for `Accept: image/png`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from model.imageio import grid_columns, grid_png

from . import bodies, responses, schemas, validation
from .cascade import CascadePlan, StageRunner, cascade_plan, cascade_stages
from .context import RequestContext, wait_for_results
from .errors import PROBLEM_TYPES, NotReady, ShuttingDown, problem_response
from .images import b64_png, encode_png
from .items import DecodeItem, SampleItem
from .model_route import ServiceRoute, model_endpoint, service
from .parsing import read_body
from .registry import ServedCascade, ServedModel
from .settings import Settings
from .state import Phase, ServiceState

router = APIRouter(route_class=ServiceRoute)
metrics_router = APIRouter()  # left out when metrics_access is closed

MODEL_ERRORS = responses.problem_responses(400, 404, 408, 413, 415, 422, 503, 504)
T = TypeVar("T")
ReqT = TypeVar("ReqT", bound=BaseModel)
ItemT = TypeVar("ItemT")


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def request_context(request: Request, svc: ServiceState, timeout_ms: int | None) -> RequestContext:
    """The request's context, its deadline counted from its arrival; 504 if that has already passed."""
    timeout = validation.timeout_s(timeout_ms, svc.settings)
    arrival = getattr(request.state, "arrival", time.monotonic())
    ctx = RequestContext(request_id=request.state.request_id, deadline=arrival + timeout, timeout_s=timeout)
    if ctx.remaining() <= 0:  # e.g. a slow upload used it all: never queue expired work
        raise ctx.deadline_exceeded()
    return ctx


async def compute(
    request: Request,
    svc: ServiceState,
    operation: str,
    model: ServedModel,
    items: Sequence[Any],
    timeout_ms: int | None,
) -> list[Any]:
    """Queue the items on their batcher and wait for their results (deadline from arrival)."""
    ctx = request_context(request, svc, timeout_ms)
    svc.inflight.queued += 1  # from here until its results are back, it cannot join another batch
    try:
        futures = svc.batcher(model.name, operation).submit(items, ctx)
        return await wait_for_results(request, ctx, futures)
    finally:
        svc.inflight.queued -= 1


def stage_runner(request: Request, svc: ServiceState, timeout_ms: int | None) -> StageRunner:
    """`compute` for each stage of a cascade request, under the request's one deadline."""
    return lambda operation, model, items: compute(request, svc, operation, model, items, timeout_ms)


async def prepare(request: Request, svc: ServiceState, build: Callable[[bytes, str, ServiceState], T]) -> T:
    """Read the body and turn it into (request, model, items) with `build`, off the loop when large."""
    raw = await read_body(request)
    return await svc.parser.run(len(raw), build, raw, request.headers.get("content-type", ""), svc)


def sample_request(
    raw: bytes, content_type: str, svc: ServiceState
) -> (
    tuple[schemas.SampleRequest, ServedModel, list[SampleItem]]
    | tuple[schemas.SampleRequest, ServedCascade, CascadePlan]
):
    """/sample's body: a model's items, or a cascade's plan (service.cascade)."""
    req = bodies.json_body(raw, content_type, schemas.SampleRequest, svc.settings)
    model = svc.registry.get_any(req.model)
    if isinstance(model, ServedCascade):
        return req, model, cascade_plan(req, model, svc.settings)
    if req.stages is not None:
        raise validation.invalid("stages", f"model {model.name!r} is not a cascade: omit stages")
    return req, model, validation.sample_items(req, model, svc.settings)


def image_request(
    model_cls: type[ReqT], make_item: Callable[[ReqT, bytes, ServedModel, Settings], ItemT]
) -> Callable[[bytes, str, ServiceState], tuple[ReqT, ServedModel, ItemT]]:
    """The builder of an endpoint that takes an image (JSON with image_b64, or a form)."""

    def build(raw: bytes, content_type: str, svc: ServiceState) -> tuple[ReqT, ServedModel, ItemT]:
        req, image = bodies.image_body(raw, content_type, model_cls, svc.settings)
        model = svc.registry.get(req.model)  # type: ignore[attr-defined]
        return req, model, make_item(req, image, model, svc.settings)

    return build


reconstruct_request = image_request(schemas.ReconstructRequest, validation.reconstruct_item)
encode_request = image_request(schemas.EncodeRequest, validation.encode_item)


def decode_request(
    raw: bytes, content_type: str, svc: ServiceState
) -> tuple[schemas.DecodeRequest, ServedModel, DecodeItem]:
    req = bodies.json_body(raw, content_type, schemas.DecodeRequest, svc.settings)
    model = svc.registry.get(req.model)
    return req, model, validation.decode_item(req, model, svc.settings)


def prefers_png(request: Request) -> bool:
    """True when the Accept header asks for image/png at least as strongly as for JSON."""
    accept = request.headers.get("accept")
    if not accept:
        return False
    weights: dict[str, float] = {}
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for p in params:
            if p.startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        weights[media.lower()] = max(weights.get(media.lower(), 0.0), q)
    png = weights.get("image/png", weights.get("image/*", 0.0))
    return png > 0 and png >= weights.get("application/json", 0.0)


def sampled_data(images: list[np.ndarray], items: Sequence[Any]) -> list[dict[str, Any]]:
    """Each sampled image as the answers carry it (/sample, its stream's events): its base64 PNG,
    and the seed and label of its item."""
    return [{"b64_json": b64_png(img), "seed": it.seed, "label": it.label} for img, it in zip(images, items)]


def labels_header(labels: Sequence[int | None]) -> dict[str, str]:
    """X-Labels: each image's label, comma-separated, "null" for the unconditional prior."""
    return {"X-Labels": ",".join("null" if y is None else str(y) for y in labels)}


def png_response(
    images: list[np.ndarray],
    seeds: list[int],
    headers: dict[str, str] | None = None,
    columns: int | None = None,
) -> Response:
    """One PNG, or a row-major grid of them (X-Grid-Columns; square unless `columns` is given)
    when there are several."""
    headers = dict(headers or {})
    if len(images) == 1:
        body = encode_png(images[0])
        headers["X-Seed"] = str(seeds[0])
    else:
        columns = columns or grid_columns(len(images))
        body = grid_png(np.stack(images), columns)
        headers["X-Grid-Columns"] = str(columns)
    headers["X-Seeds"] = ",".join(map(str, seeds))
    return Response(body, media_type="image/png", headers=headers)


def sampled_response(
    request: Request, model: ServedModel | ServedCascade, images: list[np.ndarray], items: Sequence[Any]
) -> Any:
    """The answer of an endpoint that samples: JSON with each image's seed and label, or the PNG
    (a grid for several) with X-Seeds and X-Labels."""
    if prefers_png(request):
        return png_response(images, [it.seed for it in items], labels_header([it.label for it in items]))
    return responses.ImageResponse(
        created=int(time.time()),
        model=model.name,
        data=[responses.SampledImage(**d) for d in sampled_data(images, items)],
    )


# --------------------------------------------------------------------------------------------
# Model endpoints
# --------------------------------------------------------------------------------------------


@router.post(
    "/sample",
    summary="Draw images from the prior",
    response_model=responses.ImageResponse,
    responses={
        200: {"content": {"image/png": {}}, "description": "JSON, or the PNG (a grid when n > 1)"},
        **MODEL_ERRORS,
    },
    openapi_extra=schemas.json_request_body(schemas.SampleRequest),
    tags=["images"],
)
@model_endpoint
async def sample(request: Request) -> Any:
    """n images from the model's prior. Image i uses seed + i; the seeds used are returned, and the
    label each image was drawn with. Options left out take the model's sampling defaults (GET
    /v1/models: `sampling`): for a class-conditional model, image i's label is seed_i mod
    num_classes unless `label` is given; `"label": null` draws from the unconditional prior.
    `Accept: image/png` returns the PNG (a grid for n > 1) with X-Seeds and X-Labels.

    A cascade (GET /v1/models: object "cascade") runs its stages in this one request, each batched
    with the other requests at that stage; `stages[k]` gives stage k's temperature, guidance and
    low_res_noise. The answer is its last stage's images, with the images' own seeds and labels."""
    svc = service(request)
    body, model, items = await prepare(request, svc, sample_request)
    if isinstance(model, ServedCascade):
        stages = [
            images async for images in cascade_stages(items, stage_runner(request, svc, body.timeout_ms))
        ]
        return sampled_response(request, model, stages[-1], items.items)
    images = await compute(request, svc, "sample", model, items, body.timeout_ms)
    return sampled_response(request, model, images, items)


@router.post(
    "/reconstruct",
    summary="Reconstruct an image at any depth",
    response_model=responses.ReconstructResponse,
    responses={200: {"content": {"image/png": {}}}, **MODEL_ERRORS},
    openapi_extra=schemas.image_request_body(schemas.ReconstructRequest),
    tags=["images"],
)
@model_endpoint
async def reconstruct(request: Request) -> Any:
    """The top `layers` latent layers from the image's posterior, the rest from the prior (at the
    given temperature), in one pass. Returns the reconstruction and the bits it took from the image."""
    svc = service(request)
    req, model, item = await prepare(request, svc, reconstruct_request)
    (result,) = await compute(request, svc, "reconstruct", model, [item], req.timeout_ms)
    if prefers_png(request):
        return png_response([result.image], [item.seed], {"X-Bits": f"{result.bits:.6g}"})
    return responses.ReconstructResponse(
        created=int(time.time()),
        model=model.name,
        layers=item.layers,
        data=[responses.ReconstructedImage(b64_json=b64_png(result.image), seed=item.seed, bits=result.bits)],
    )


@router.post(
    "/encode",
    summary="Per-layer KL, rate, distortion, ELBO and latents of an image",
    response_model=responses.EncodeResponse,
    responses=MODEL_ERRORS,
    openapi_extra=schemas.image_request_body(schemas.EncodeRequest),
    tags=["latents"],
)
@model_endpoint
async def encode(request: Request) -> responses.EncodeResponse:
    """The image's posterior: KL of each latent layer in bits, rate, distortion and the ELBO bound in
    bits per dim, and on request (`latents: k`) the z of the top k layers as float32 tensors."""
    svc = service(request)
    req, model, item = await prepare(request, svc, encode_request)
    (result,) = await compute(request, svc, "encode", model, [item], req.timeout_ms)
    return responses.EncodeResponse(
        created=int(time.time()),
        model=model.name,
        seed=item.seed,
        dims=model.hp.image_dims,
        kl_bits=result.kl_bits,
        kl_bits_total=float(sum(result.kl_bits)),
        rate_bits_per_dim=result.rate_bpd,
        distortion_bits_per_dim=result.distortion_bpd,
        elbo_bits_per_dim=result.elbo_bpd,
        latents=[validation.latent_tensor(i, z) for i, z in enumerate(result.latents)],
    )


@router.post(
    "/decode",
    summary="Decode an image from top-layer latents",
    response_model=responses.ImageResponse,
    responses={200: {"content": {"image/png": {}}}, **MODEL_ERRORS},
    openapi_extra=schemas.json_request_body(schemas.DecodeRequest),
    tags=["latents"],
)
@model_endpoint
async def decode(request: Request) -> Any:
    """The image whose top latent layers are the given z (as /encode returns them); the layers
    below come from the prior at the given temperature and seed. Options left out take the model's
    sampling defaults, as in /sample."""
    svc = service(request)
    body, model, item = await prepare(request, svc, decode_request)
    images = await compute(request, svc, "decode", model, [item], body.timeout_ms)
    return sampled_response(request, model, images, [item])


# --------------------------------------------------------------------------------------------
# Metadata, health, metrics
# --------------------------------------------------------------------------------------------


def model_info(svc: ServiceState, model: ServedModel | ServedCascade) -> responses.ModelInfo:
    s = svc.settings
    limits = responses.ServingLimits(
        max_batch_size=s.max_batch_size,
        max_images_per_request=s.max_images_per_request,
        max_queue_images=s.max_queue_images,
        request_timeout_s=s.request_timeout_s,
    )
    return responses.ModelInfo(default=model.name == svc.registry.default_name, limits=limits, **model.info())


@router.get("/v1/models", response_model=responses.ModelList, tags=["models"], summary="The served models")
async def list_models(request: Request) -> responses.ModelList:
    svc = service(request)
    served = [*svc.registry.models.values(), *svc.registry.cascades.values()]
    return responses.ModelList(data=[model_info(svc, m) for m in served])


@router.get(
    "/v1/models/{name}",
    response_model=responses.ModelInfo,
    responses=responses.problem_responses(404),
    tags=["models"],
    summary="One model: image size, channels, layers, parameters, classes, output head, provenance",
)
async def get_model(name: str, request: Request) -> responses.ModelInfo:
    svc = service(request)
    return model_info(svc, svc.registry.get_any(name))


@router.get(
    "/health/live", response_model=responses.Health, tags=["health"], summary="200 while the process is up"
)
@router.get("/v2/health/live", include_in_schema=False)
async def live() -> responses.Health:
    return responses.Health(status="live")


@router.get(
    "/health/ready",
    response_model=responses.Health,
    responses=responses.problem_responses(503),
    tags=["health"],
    summary="200 once every model is loaded and warmed up; 503 before that and while draining",
)
@router.get("/v2/health/ready", include_in_schema=False)
async def ready(request: Request) -> Any:
    svc = service(request)
    if svc.phase is Phase.READY:
        return responses.Health(
            status="ready",
            models=sorted([*svc.registry.models, *svc.registry.cascades]),
            model_errors=svc.registry.errors,
        )
    error = (
        ShuttingDown(svc.problem)
        if svc.phase is Phase.DRAINING
        else NotReady(svc.problem, headers={"Retry-After": "5"})
    )
    return problem_response(request, error)  # not counted as a failed request: probes poll this


@metrics_router.get(
    "/metrics", tags=["health"], summary="Prometheus metrics", response_class=PlainTextResponse
)
async def metrics(request: Request) -> Response:
    return Response(service(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/problems/{slug}", include_in_schema=False)
async def problem_type(slug: str) -> Response:
    """The page behind each problem `type` URI."""
    cls = PROBLEM_TYPES.get(slug)
    if cls is None:
        return JSONResponse({"detail": f"no problem type {slug!r}"}, status_code=404)
    return PlainTextResponse(f"{cls.title} (HTTP {cls.status})\n\n{cls.description}\n")
