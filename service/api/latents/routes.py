"""The latent endpoints: POST /encode (an image's posterior: per-layer KL, rate, distortion, ELBO
and latents), /decode (an image from top-layer latents, the rest from the prior) and /interpolate
(images between two seeds or images, through each latent layer's standardized prior noise).

Each endpoint reads its body into (request, model, items) with the input builder beside it and hands
the items to its operation. One /interpolate request of `steps` images is `steps` items on the
INTERPOLATE batcher, batched with other interpolations; a batch draws each path's endpoints once.
Its body is JSON (an end is `{"seed": 3}`, `3`, or `{"image_b64": ...}`) or multipart/form-data,
where `start` and `end` are files or text fields holding the same JSON.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np
from fastapi import APIRouter, Response

from model.interpolation import steps_t

from ...batching.items import DecodeItem, EncodeItem, Endpoint, InterpolateItem, InterpolationPath
from ...batching.operations import DECODE, ENCODE, INTERPOLATE
from ...errors import invalid_field
from ...inputs.fields import LatentTensor
from ...inputs.payloads import form_or_json_body, image_body, json_body
from ...inputs.uploads import decode_base64
from ...inputs.validation import (
    image_for,
    label_for,
    latents_for,
    layers_for,
    sampling_for,
    seeds_for,
    within_image_limit,
)
from ...registry import ServedModel
from ...settings import Settings
from ...state import ServiceState
from ...wire import tensor_b64
from ..answers import b64_png, labels_header, png_response, prefers_png, sampled_response
from ..bodies import MODEL_ERRORS, ImageResponse
from ..openapi import image_request_body, inlined_schema, json_request_body
from ..routing import DirectModelRoute, ModelRequest
from .bodies import (
    DecodeRequest,
    EncodeRequest,
    EncodeResponse,
    InterpolatedImage,
    InterpolateRequest,
    InterpolateResponse,
    InterpolationEnd,
)

router = APIRouter(route_class=DirectModelRoute)


# --------------------------------------------------------------------------------------------
# Bodies -> (request, model, items)
# --------------------------------------------------------------------------------------------


def encode_item(req: EncodeRequest, image: bytes, model: ServedModel, settings: Settings) -> EncodeItem:
    L = model.num_layers
    if req.latents > L:
        raise invalid_field(
            "latents", f"latents={req.latents} is out of range: model {model.name!r} has {L} latent layers"
        )
    return EncodeItem(
        image=image_for(image, model, settings),
        seed=seeds_for(req.seed, 1)[0],
        label=label_for(req.label, model),
        latent_layers=req.latents,
    )


def encode_input(
    raw: bytes, content_type: str, svc: ServiceState
) -> tuple[EncodeRequest, ServedModel, EncodeItem]:
    req, image = image_body(raw, content_type, EncodeRequest, svc.settings)
    model = svc.registry.get(req.model)
    return req, model, encode_item(req, image, model, svc.settings)


def decode_item(req: DecodeRequest, model: ServedModel, settings: Settings) -> DecodeItem:
    (o,) = sampling_for(req, model, settings, seeds_for(req.seed, 1))
    return DecodeItem(
        latents=latents_for(req.latents, model),
        seed=o.seed,
        temperature=o.temperature,
        label=o.label,
        guidance=o.guidance,
    )


def decode_input(
    raw: bytes, content_type: str, svc: ServiceState
) -> tuple[DecodeRequest, ServedModel, DecodeItem]:
    req = json_body(raw, content_type, DecodeRequest, svc.settings)
    model = svc.registry.get(req.model)
    return req, model, decode_item(req, model, svc.settings)


def endpoint_for(
    name: str,
    given: InterpolationEnd | None,
    upload: bytes | None,
    seed: int,
    model: ServedModel,
    settings: Settings,
) -> Endpoint:
    if given is not None and upload is not None:
        raise invalid_field(name, f"send {name} once: as a file or as a field")
    if upload is not None:
        return Endpoint(seed, image_for(upload, model, settings))
    if given is None:
        raise invalid_field(
            name, f'{name} is missing: give a seed ({{"seed": 3}}), an image ({{"image_b64": ...}}) or a file'
        )
    if given.image_b64 is not None:
        return Endpoint(seed, image_for(decode_base64(given.image_b64, f"{name}.image_b64"), model, settings))
    return Endpoint(given.seed)


def interpolate_items(
    req: InterpolateRequest, uploads: dict[str, bytes], model: ServedModel, settings: Settings
) -> list[InterpolateItem]:
    within_image_limit("steps", req.steps, settings)
    seed = seeds_for(req.seed, 1)[0]
    start = endpoint_for("start", req.start, uploads.get("start"), seed, model, settings)
    end = endpoint_for("end", req.end, uploads.get("end"), seed, model, settings)
    # One label for the whole path. Left out, the model's label rule applied to a seed start, so the
    # path begins at exactly the image /sample draws for that seed; an image start has no seed's label.
    options = sampling_for(req, model, settings, [start.seed])[0]
    label = options.label if "label" in req.model_fields_set or start.image is None else None
    path = InterpolationPath(
        start=start,
        end=end,
        layers=layers_for("layers", req.layers, model),
        seed=seed,
        temperature=options.temperature,
        label=label,
        guidance=options.guidance if label is not None else None,
    )
    return [InterpolateItem(path, t) for t in steps_t(req.steps)]


def interpolate_input(
    raw: bytes, content_type: str, svc: ServiceState
) -> tuple[InterpolateRequest, ServedModel, list[InterpolateItem]]:
    """The body (JSON, or a form whose `start` and `end` may be files) -> the request, its model and
    one item per step."""
    req, uploads = form_or_json_body(
        raw, content_type, InterpolateRequest, svc.settings, files=("start", "end")
    )
    model = svc.registry.get(req.model)
    return req, model, interpolate_items(req, uploads, model, svc.settings)


def latent_tensor(layer: int, z: np.ndarray) -> LatentTensor:
    return LatentTensor(layer=layer, shape=list(z.shape), dtype="float32", data=tensor_b64(z))


def request_body() -> dict[str, Any]:
    """OpenAPI requestBody: the JSON body, or its fields as a form whose `start` and `end` may be files."""
    schema = inlined_schema(InterpolateRequest)
    form = copy.deepcopy(schema)
    form.pop("examples", None)
    for name in ("start", "end"):
        form["properties"][name] = {
            "anyOf": [{"type": "string", "format": "binary"}, {"type": "string"}],
            "description": "An image file, or the JSON of a seed or image_b64 as text.",
        }
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema}, "multipart/form-data": {"schema": form}},
        }
    }


# --------------------------------------------------------------------------------------------
# Endpoints
# --------------------------------------------------------------------------------------------


@router.post(
    "/encode",
    summary="Per-layer KL, rate, distortion, ELBO and latents of an image",
    response_model=EncodeResponse,
    responses=MODEL_ERRORS,
    openapi_extra=image_request_body(EncodeRequest),
    tags=["latents"],
)
async def encode(request: ModelRequest) -> EncodeResponse:
    """The image's posterior: KL of each latent layer in bits, rate, distortion and the ELBO bound in
    bits per dim, and on request (`latents: k`) the z of the top k layers as float32 tensors."""
    req, model, item = await request.parse(encode_input)
    (result,) = await request.run(ENCODE, model, [item], req.timeout_ms)
    return EncodeResponse(
        created=int(time.time()),
        model=model.name,
        seed=item.seed,
        dims=model.hp.image_dims,
        kl_bits=result.kl_bits,
        kl_bits_total=float(sum(result.kl_bits)),
        rate_bits_per_dim=result.rate_bpd,
        distortion_bits_per_dim=result.distortion_bpd,
        elbo_bits_per_dim=result.elbo_bpd,
        latents=[latent_tensor(i, z) for i, z in enumerate(result.latents)],
    )


@router.post(
    "/decode",
    summary="Decode an image from top-layer latents",
    response_model=ImageResponse,
    responses={200: {"content": {"image/png": {}}}, **MODEL_ERRORS},
    openapi_extra=json_request_body(DecodeRequest),
    tags=["latents"],
)
async def decode(request: ModelRequest) -> ImageResponse | Response:
    """The image whose top latent layers are the given z (as /encode returns them); the layers
    below come from the prior at the given temperature and seed. Options left out take the model's
    sampling defaults, as in /sample."""
    body, model, item = await request.parse(decode_input)
    images = await request.run(DECODE, model, [item], body.timeout_ms)
    return sampled_response(request, model, images, [item])


@router.post(
    "/interpolate",
    summary="Images between two seeds or images",
    response_model=InterpolateResponse,
    responses={200: {"content": {"image/png": {}}, "description": "JSON, or one PNG row"}, **MODEL_ERRORS},
    openapi_extra=request_body(),
    tags=["latents"],
)
async def interpolate(request: ModelRequest) -> InterpolateResponse | Response:
    """`steps` images from `start` to `end` (each a seed or an image), interpolated spherically in each
    latent layer's standardized prior noise and decoded top-down. With every layer interpolated the
    ends are the endpoint images: /sample's image of a seed, the full reconstruction of an image."""
    req, model, items = await request.parse(interpolate_input)
    images = await request.run(INTERPOLATE, model, items, req.timeout_ms)
    path = items[0].path
    if prefers_png(request):
        return png_response(
            images, [path.seed] * len(images), labels_header([path.label] * len(images)), columns=len(images)
        )
    return InterpolateResponse(
        created=int(time.time()),
        model=model.name,
        layers=path.layers,
        seed=path.seed,
        label=path.label,
        data=[InterpolatedImage(b64_json=b64_png(img), t=it.t) for img, it in zip(images, items)],
    )
