"""POST /interpolate: images between two endpoints, each a seed or an image.

The path runs through each latent layer's standardized prior noise, spherically, decoded top-down
(model.interpolation says why). One request of `steps` images is `steps` items on the `interpolate`
batcher, batched with other interpolations; a batch draws each path's endpoints once. The body is
JSON (an endpoint is `{"seed": 3}`, `3`, or `{"image_b64": ...}`) or multipart/form-data, where
`start` and `end` are files or text fields holding the same JSON.
"""

from __future__ import annotations

import copy
import time
from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, model_validator

from model.interpolation import steps_t
from model.sampling import MAX_SEED

from . import bodies, schemas, validation
from .images import b64_png, decode_base64
from .items import Endpoint, InterpolateItem, InterpolationPath
from .model_route import ServiceRoute, model_endpoint, service
from .registry import ServedModel
from .routes import MODEL_ERRORS, compute, labels_header, png_response, prefers_png, prepare
from .settings import Settings
from .state import ServiceState

router = APIRouter(route_class=ServiceRoute)


class InterpolationEnd(schemas.StrictModel):
    """A seed (the image /sample draws from it), or an image (base64 PNG or JPEG)."""

    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    image_b64: str | None = Field(None, description="base64 PNG or JPEG (a data: URL prefix is allowed).")

    @model_validator(mode="before")
    @classmethod
    def _seed_shorthand(cls, value: Any) -> Any:
        """A bare integer is a seed."""
        return {"seed": value} if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _one_of(self) -> InterpolationEnd:
        if (self.seed is None) == (self.image_b64 is None):
            raise ValueError("give a seed or an image_b64, not both and not neither")
        return self


EndField = Annotated[
    InterpolationEnd | None,
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": MAX_SEED, "description": "A seed."},
                {
                    "type": "object",
                    "properties": {
                        "seed": {"type": "integer", "minimum": 0, "maximum": MAX_SEED},
                        "image_b64": {"type": "string", "description": "base64 PNG or JPEG."},
                    },
                    "additionalProperties": False,
                    "description": "A seed or an image (one of the two).",
                },
            ],
            "description": "A seed, or an image; in a multipart form also an image file of this name.",
        }
    ),
]


class InterpolateRequest(schemas.StrictModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"start": {"seed": 1}, "end": {"seed": 2}, "steps": 8, "label": 3},
                {
                    "start": {"image_b64": schemas.EXAMPLE_PNG_B64},
                    "end": {"seed": 7},
                    "steps": 5,
                    "layers": 6,
                },
            ]
        },
    )

    model: schemas.ModelField = None
    start: EndField = None
    end: EndField = None
    steps: int = Field(8, ge=2, le=64, description="Images on the path, both ends included.")
    layers: int | None = Field(
        None,
        ge=0,
        description="Interpolate the top `layers` latent layers (all when omitted); the layers below "
        "come from `seed` at `temperature`, the same for every step.",
    )
    temperature: schemas.TemperatureField = None
    seed: schemas.SeedField = None
    label: schemas.LabelField = None
    guidance: schemas.Guidance | None = Field(None, description=schemas.SamplingGuidanceDescription)
    timeout_ms: schemas.TimeoutField = None


class InterpolatedImage(BaseModel):
    b64_json: str = Field(description="base64 PNG.")
    t: float = Field(description="Place on the path: 0 at the start, 1 at the end.")


class InterpolateResponse(BaseModel):
    created: int
    model: str
    layers: int = Field(description="Latent layers interpolated.")
    seed: int = Field(description="Seed of the layers below, and of image endpoints' posterior noise.")
    label: int | None = Field(
        description="The path's label: the one given, else the model's label rule applied to a seed start."
    )
    data: list[InterpolatedImage]


def endpoint_for(
    name: str,
    given: InterpolationEnd | None,
    upload: bytes | None,
    seed: int,
    model: ServedModel,
    settings: Settings,
) -> Endpoint:
    if given is not None and upload is not None:
        raise validation.invalid(name, f"send {name} once: as a file or as a field")
    if upload is not None:
        return Endpoint(seed, validation.image_for(upload, model, settings))
    if given is None:
        raise validation.invalid(
            name, f'{name} is missing: give a seed ({{"seed": 3}}), an image ({{"image_b64": ...}}) or a file'
        )
    if given.image_b64 is not None:
        return Endpoint(
            seed, validation.image_for(decode_base64(given.image_b64, f"{name}.image_b64"), model, settings)
        )
    return Endpoint(given.seed)


def interpolate_items(
    req: InterpolateRequest, uploads: dict[str, bytes], model: ServedModel, settings: Settings
) -> list[InterpolateItem]:
    validation.within_image_limit("steps", req.steps, settings)
    seed = validation.seeds_for(req.seed, 1)[0]
    start = endpoint_for("start", req.start, uploads.get("start"), seed, model, settings)
    end = endpoint_for("end", req.end, uploads.get("end"), seed, model, settings)
    # One label for the whole path. Left out, the model's label rule applied to a seed start, so the
    # path begins at exactly the image /sample draws for that seed; an image start has no seed's label.
    options = validation.sampling_for(req, model, settings, [start.seed])[0]
    label = options.label if "label" in req.model_fields_set or start.image is None else None
    path = InterpolationPath(
        start=start,
        end=end,
        layers=validation.layers_for("layers", req.layers, model),
        seed=seed,
        temperature=options.temperature,
        label=label,
        guidance=options.guidance if label is not None else None,
    )
    return [InterpolateItem(path, t) for t in steps_t(req.steps)]


def interpolate_request(
    raw: bytes, content_type: str, svc: ServiceState
) -> tuple[InterpolateRequest, ServedModel, list[InterpolateItem]]:
    """The body (JSON, or a form whose `start` and `end` may be files) -> the request, its model and
    one item per step; run by routes.prepare, off the loop when the body is large."""
    req, uploads = bodies.form_or_json_body(
        raw, content_type, InterpolateRequest, svc.settings, files=("start", "end")
    )
    model = svc.registry.get(req.model)
    return req, model, interpolate_items(req, uploads, model, svc.settings)


def request_body() -> dict[str, Any]:
    """OpenAPI requestBody: the JSON body, or its fields as a form whose `start` and `end` may be files."""
    schema = schemas.inlined_schema(InterpolateRequest)
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


@router.post(
    "/interpolate",
    summary="Images between two seeds or images",
    response_model=InterpolateResponse,
    responses={200: {"content": {"image/png": {}}, "description": "JSON, or one PNG row"}, **MODEL_ERRORS},
    openapi_extra=request_body(),
    tags=["latents"],
)
@model_endpoint
async def interpolate(request: Request) -> Any:
    """`steps` images from `start` to `end` (each a seed or an image), interpolated spherically in each
    latent layer's standardized prior noise and decoded top-down. With every layer interpolated the
    ends are the endpoint images: /sample's image of a seed, the full reconstruction of an image."""
    svc = service(request)
    req, model, items = await prepare(request, svc, interpolate_request)
    images = await compute(request, svc, "interpolate", model, items, req.timeout_ms)
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
