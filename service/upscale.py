"""POST /upscale: a super-resolution model's images of a user's low-resolution image.

The model is a super-resolution model (GET /v1/models: `low_res` > 0), or a cascade (then one of
its super-resolution stages, `stage`, by default the first). The image comes as /reconstruct's
does (JSON `image_b64`, or a multipart file `image`) and must be exactly `low_res` pixels square
with the model's channels: anything else is a 422 invalid-image problem naming the size expected,
never a silent resize. Its options are /sample's (temperature, label, guidance, seed; left out: the
model's sampling defaults), plus `low_res_noise`. Items queue on the model's "upscale" batcher,
which a cascade's stage shares.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from . import bodies, responses, schemas
from .items import UpscaleItem
from .model_route import ServiceRoute, model_endpoint, service
from .registry import ServedCascade, ServedModel
from .routes import MODEL_ERRORS, compute, prepare, sampled_response
from .settings import Settings
from .state import ServiceState
from .validation import image_for, invalid, sampling_for, seeds_for

router = APIRouter(route_class=ServiceRoute)


def upscale_model(req: schemas.UpscaleRequest, svc: ServiceState) -> ServedModel:
    """The super-resolution model the request names: a model, or a cascade's stage."""
    found = svc.registry.get_any(req.model)
    if isinstance(found, ServedCascade):
        last = len(found.stages) - 1
        k = 1 if req.stage is None else req.stage
        if not 1 <= k <= last:
            raise invalid(
                "stage", f"cascade {found.name!r} has super-resolution stages 1..{last}, got stage={k}"
            )
        return found.stages[k]
    if req.stage is not None:
        raise invalid("stage", f"model {found.name!r} is not a cascade: omit stage")
    if not found.hp.low_res:
        raise svc.registry.unsupported(found.name, "upscale")
    return found


def upscale_item(
    req: schemas.UpscaleRequest, image: bytes, model: ServedModel, settings: Settings
) -> UpscaleItem:
    low_res = image_for(image, model, settings, size=model.hp.low_res)
    (it,) = sampling_for(req, model, settings, seeds_for(req.seed, 1))
    return UpscaleItem(low_res, it.seed, it.temperature, it.label, it.guidance, req.low_res_noise)


def upscale_request(
    raw: bytes, content_type: str, svc: ServiceState
) -> tuple[schemas.UpscaleRequest, ServedModel, UpscaleItem]:
    req, image = bodies.image_body(raw, content_type, schemas.UpscaleRequest, svc.settings)
    model = upscale_model(req, svc)
    return req, model, upscale_item(req, image, model, svc.settings)


@router.post(
    "/upscale",
    summary="Super-resolve a low-resolution image",
    response_model=responses.ImageResponse,
    responses={200: {"content": {"image/png": {}}}, **MODEL_ERRORS},
    openapi_extra=schemas.image_request_body(schemas.UpscaleRequest),
    tags=["images"],
)
@model_endpoint
async def upscale(request: Request) -> Any:
    """An image of the super-resolution model's size drawn given the uploaded low-resolution image
    (exactly `low_res` pixels square; GET /v1/models). `model` may name a cascade, whose `stage`
    (default 1) does it. The seed and label used are returned; `Accept: image/png` returns the PNG."""
    svc = service(request)
    body, model, item = await prepare(request, svc, upscale_request)
    images = await compute(request, svc, "upscale", model, [item], body.timeout_ms)
    return sampled_response(request, model, images, [item])
