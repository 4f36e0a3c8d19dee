"""The image endpoints: POST /sample (a model's prior, or a cascade's stages), /sample/stream (the
same as server-sent events, coarse to fine), /reconstruct (an image from its top latent layers, the
rest from the prior) and /upscale (a super-resolution model's image of a low-resolution upload).

Each endpoint reads its body into (request, model, items) with the input builder beside it, hands
the items to its operation and answers with JSON (base64 PNGs) or, for `Accept: image/png`, the
PNG itself (answers.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from fastapi import APIRouter, Response

from ...batching.items import ReconstructItem, SampleItem, UpscaleItem
from ...batching.operations import RECONSTRUCT, SAMPLE, UPSCALE
from ...errors import invalid_field
from ...inputs.payloads import image_body, json_body
from ...inputs.validation import (
    image_for,
    label_for,
    layers_for,
    sampling_for,
    seeds_for,
    temperature_for,
    within_image_limit,
)
from ...registry import ServedCascade, ServedModel
from ...settings import Settings
from ...state import ServiceState
from ..answers import b64_png, labels_header, png_response, prefers_png, sampled_response
from ..bodies import MODEL_ERRORS, ImageResponse
from ..openapi import image_request_body, json_request_body
from ..routing import DirectModelRoute, ModelRequest
from .bodies import ReconstructedImage, ReconstructRequest, ReconstructResponse, SampleRequest, UpscaleRequest
from .cascades import CascadePlan, cascade_plan, cascade_stages
from .streams import EVENT_SCHEMA, EVENTS, CascadeStream, EventStream, SampleStream

router = APIRouter(route_class=DirectModelRoute)


# --------------------------------------------------------------------------------------------
# Bodies -> (request, model, items)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSample:
    """A /sample body on a model: its images' items."""

    body: SampleRequest
    model: ServedModel
    items: list[SampleItem]


@dataclass(frozen=True)
class CascadeSample:
    """A /sample body on a cascade: every stage's items."""

    body: SampleRequest
    cascade: ServedCascade
    plan: CascadePlan


def sample_input(raw: bytes, content_type: str, svc: ServiceState) -> ModelSample | CascadeSample:
    """/sample's body (and /sample/stream's): a model's items, or a cascade's plan."""
    req = json_body(raw, content_type, SampleRequest, svc.settings)
    model = svc.registry.get_any(req.model)
    if isinstance(model, ServedCascade):
        return CascadeSample(req, model, cascade_plan(req, model, svc.settings))
    if req.stages is not None:
        raise invalid_field("stages", f"model {model.name!r} is not a cascade: omit stages")
    within_image_limit("n", req.n, svc.settings)
    return ModelSample(req, model, sampling_for(req, model, svc.settings, seeds_for(req.seed, req.n)))


def reconstruct_input(
    raw: bytes, content_type: str, svc: ServiceState
) -> tuple[ReconstructRequest, ServedModel, ReconstructItem]:
    req, image = image_body(raw, content_type, ReconstructRequest, svc.settings)
    model = svc.registry.get(req.model)
    item = ReconstructItem(
        image=image_for(image, model, svc.settings),
        layers=layers_for("layers", req.layers, model),
        seed=seeds_for(req.seed, 1)[0],
        temperature=temperature_for(req.temperature, model, svc.settings),
        label=label_for(req.label, model),
    )
    return req, model, item


def upscale_model(req: UpscaleRequest, svc: ServiceState) -> ServedModel:
    """The super-resolution model the request names: a model, or a cascade's stage."""
    found = svc.registry.get_any(req.model)
    if isinstance(found, ServedCascade):
        last = len(found.stages) - 1
        k = 1 if req.stage is None else req.stage
        if not 1 <= k <= last:
            raise invalid_field(
                "stage", f"cascade {found.name!r} has super-resolution stages 1..{last}, got stage={k}"
            )
        return found.stages[k]
    if req.stage is not None:
        raise invalid_field("stage", f"model {found.name!r} is not a cascade: omit stage")
    if not found.hp.low_res:
        raise UPSCALE.unsupported(found.name)
    return found


def upscale_item(req: UpscaleRequest, image: bytes, model: ServedModel, settings: Settings) -> UpscaleItem:
    """The low-resolution upload, exactly `low_res` square (any other size is a 422 naming it), and
    the image's sampling options (left out: the model's defaults)."""
    low_res = image_for(image, model, settings, size=model.hp.low_res)
    (it,) = sampling_for(req, model, settings, seeds_for(req.seed, 1))
    return UpscaleItem(low_res, it.seed, it.temperature, it.label, it.guidance, req.low_res_noise)


def upscale_input(
    raw: bytes, content_type: str, svc: ServiceState
) -> tuple[UpscaleRequest, ServedModel, UpscaleItem]:
    req, image = image_body(raw, content_type, UpscaleRequest, svc.settings)
    model = upscale_model(req, svc)
    return req, model, upscale_item(req, image, model, svc.settings)


# --------------------------------------------------------------------------------------------
# Endpoints
# --------------------------------------------------------------------------------------------


@router.post(
    "/sample",
    summary="Draw images from the prior",
    response_model=ImageResponse,
    responses={
        200: {"content": {"image/png": {}}, "description": "JSON, or the PNG (a grid when n > 1)"},
        **MODEL_ERRORS,
    },
    openapi_extra=json_request_body(SampleRequest),
    tags=["images"],
)
async def sample(request: ModelRequest) -> ImageResponse | Response:
    """n images from the model's prior. Image i uses seed + i; the seeds used are returned, and the
    label each image was drawn with. Options left out take the model's sampling defaults (GET
    /v1/models: `sampling`): for a class-conditional model, image i's label is seed_i mod
    num_classes unless `label` is given; `"label": null` draws from the unconditional prior.
    `Accept: image/png` returns the PNG (a grid for n > 1) with X-Seeds and X-Labels.

    A cascade (GET /v1/models: object "cascade") runs its stages in this one request, each batched
    with the other requests at that stage; `stages[k]` gives stage k's temperature, guidance and
    low_res_noise. The answer is its last stage's images, with the images' own seeds and labels."""
    sample = await request.parse(sample_input)
    if isinstance(sample, CascadeSample):
        timeout_ms = sample.body.timeout_ms
        stages = [images async for images in cascade_stages(sample.plan, request, timeout_ms)]
        return sampled_response(request, sample.cascade, stages[-1], sample.plan.items)
    images = await request.run(SAMPLE, sample.model, sample.items, sample.body.timeout_ms)
    return sampled_response(request, sample.model, images, sample.items)


@router.post(
    "/sample/stream",
    summary="Draw images from the prior, streamed coarse to fine (server-sent events)",
    response_class=EventStream,
    status_code=200,
    responses={
        200: {"content": {"text/event-stream": {"schema": EVENT_SCHEMA}}, "description": EVENTS},
        **MODEL_ERRORS,
    },
    openapi_extra=json_request_body(SampleRequest),
    tags=["images"],
)
async def sample_stream(request: ModelRequest) -> EventStream:
    """/sample's images as server-sent events: a `preview` per resolution of the top-down pass (the
    final images given the layers drawn so far), then the `final` images, identical to /sample's.
    The seeds and labels are in the X-Seeds and X-Labels headers and in every event."""
    sample = await request.parse(sample_input)
    stream: SampleStream | CascadeStream
    if isinstance(sample, CascadeSample):  # one event per stage
        stream = CascadeStream(request, sample.plan, sample.body.timeout_ms)
    else:
        stream = SampleStream(request, sample.model, sample.items, sample.body.timeout_ms)
    seeds = ",".join(str(it.seed) for it in stream.items)
    headers = {"X-Seeds": seeds, **labels_header([it.label for it in stream.items])}
    return EventStream(stream.events(), on_close=stream.close, headers=headers)


@router.post(
    "/reconstruct",
    summary="Reconstruct an image at any depth",
    response_model=ReconstructResponse,
    responses={200: {"content": {"image/png": {}}}, **MODEL_ERRORS},
    openapi_extra=image_request_body(ReconstructRequest),
    tags=["images"],
)
async def reconstruct(request: ModelRequest) -> ReconstructResponse | Response:
    """The top `layers` latent layers from the image's posterior, the rest from the prior (at the
    given temperature), in one pass. Returns the reconstruction and the bits it took from the image."""
    req, model, item = await request.parse(reconstruct_input)
    (result,) = await request.run(RECONSTRUCT, model, [item], req.timeout_ms)
    if prefers_png(request):
        return png_response([result.image], [item.seed], {"X-Bits": f"{result.bits:.6g}"})
    return ReconstructResponse(
        created=int(time.time()),
        model=model.name,
        layers=item.layers,
        data=[ReconstructedImage(b64_json=b64_png(result.image), seed=item.seed, bits=result.bits)],
    )


@router.post(
    "/upscale",
    summary="Super-resolve a low-resolution image",
    response_model=ImageResponse,
    responses={200: {"content": {"image/png": {}}}, **MODEL_ERRORS},
    openapi_extra=image_request_body(UpscaleRequest),
    tags=["images"],
)
async def upscale(request: ModelRequest) -> ImageResponse | Response:
    """An image of the super-resolution model's size drawn given the uploaded low-resolution image
    (exactly `low_res` pixels square; GET /v1/models). `model` may name a cascade, whose `stage`
    (default 1) does it. The seed and label used are returned; `Accept: image/png` returns the PNG."""
    body, model, item = await request.parse(upscale_input)
    images = await request.run(UPSCALE, model, [item], body.timeout_ms)
    return sampled_response(request, model, images, [item])
