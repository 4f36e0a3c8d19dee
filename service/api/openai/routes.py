"""POST /v1/images/generations: OpenAI's image generation endpoint, so that the `openai` SDKs and
the tools built on them use a served model by changing their base URL.

A request becomes the /sample request it means (`generation_input`: the prompt's class as its
label, guidance_scale as its guidance) and runs through /sample's own plan, batched with every
other sample of its model: the same seeds and settings give /sample's images, byte for byte. With
`stream` it is /sample/stream's stream, its stages written as OpenAI's events (streams.py). Its
errors, as every error under /v1/, have OpenAI's shape (service/errors.py).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

from fastapi import APIRouter, Response

from model.classes import is_index

from ...errors import InvalidInput, invalid_field, invalid_input
from ...inputs.payloads import json_body
from ...inputs.validation import label_for
from ...registry import ServedCascade, ServedModel
from ...state import ServiceState
from ..answers import b64_png, sampled_headers
from ..bodies import openai_error_responses
from ..images.bodies import SampleRequest
from ..images.routes import CascadeSample, ModelSample, open_stream, sample_plan, sampled
from ..images.streams import EventStream
from ..openapi import json_request_body
from ..routing import DirectModelRoute, ModelRequest
from .bodies import GeneratedImage, ImageGenerationRequest, ImagesResponse
from .streams import EVENT_SCHEMA, EVENTS, generation_events

router = APIRouter(route_class=DirectModelRoute)

# Most class names a message lists before it points at GET /v1/models.
LISTED_CLASSES = 40


@dataclass(frozen=True)
class Generation:
    """An image generation request as the /sample request it means."""

    body: ImageGenerationRequest
    sample: ModelSample | CascadeSample
    size: str  # WIDTHxHEIGHT of the images


def class_list(model: ServedModel) -> str:
    """The classes a prompt may name, for a message."""
    hp, classes = model.hp, model.vae.classes
    if classes is None:
        return f"its classes are numbered 0..{hp.num_classes - 1}"
    shown = ", ".join(f"{i} {name!r}" for i, name in enumerate(classes.shown[:LISTED_CLASSES]))
    more = (
        f", ... ({hp.num_classes} in all: GET /v1/models/{model.name})"
        if len(classes) > LISTED_CLASSES
        else ""
    )
    return f"its classes, by number or name in any case: {shown}{more}"


def prompt_label(prompt: str, model: ServedModel) -> int | None:
    """The class a non-empty prompt names, or the 400 that says which classes there are."""
    text = prompt.strip()
    if not model.hp.conditional:
        raise invalid_field("prompt", f"model {model.name!r} is unconditional: send an empty prompt")
    try:
        return label_for(text, model)
    except InvalidInput:
        what = f"index {text}" if is_index(text) else f"class {text!r}"
        raise invalid_field(
            "prompt", f"the prompt names no class of model {model.name!r} (no {what}); {class_list(model)}"
        ) from None


@contextlib.contextmanager
def named_as_openai(renamed: dict[str, str]) -> Iterator[None]:
    """Re-point the 422s of /sample's checks at the fields this request named them by."""
    try:
        yield
    except InvalidInput as e:
        errors = e.extra.get("errors", [])
        raise invalid_input(
            [
                {**err, "loc": ["body", renamed.get(err["loc"][1], err["loc"][1]), *err["loc"][2:]]}
                for err in errors
            ]
        ) from None


def generation_input(raw: bytes, content_type: str, svc: ServiceState) -> Generation:
    """The body -> the /sample request it means, planned by /sample's own code."""
    body = json_body(raw, content_type, ImageGenerationRequest, svc.settings)
    found = svc.registry.get_any(body.model)
    cascade = isinstance(found, ServedCascade)
    base = found.stages[0] if cascade else found
    given = body.model_fields_set
    fields: dict[str, object] = {"model": body.model}
    for name in ("n", "seed", "temperature", "timeout_ms"):
        if getattr(body, name) is not None:
            fields[name] = getattr(body, name)
    if "guidance_scale" in given:
        fields["guidance"] = body.guidance_scale
    if cascade:
        for name in ("temperature", "guidance_scale"):
            if name in given:
                raise invalid_field(
                    name, f"model {found.name!r} is a cascade: its stages' options are the cascade's own "
                    "(POST /sample takes them per stage)"
                )  # fmt: skip
    renamed = {"guidance": "guidance_scale"}
    prompted = body.prompt.strip() != ""
    named = prompt_label(body.prompt, base) if prompted else None  # checked even when `label` decides
    if "label" in given:
        fields["label"] = body.label
    elif prompted:
        fields["label"] = named
        renamed["label"] = "prompt"
    last = found.stages[-1] if cascade else found
    size = f"{last.hp.image_size}x{last.hp.image_size}"
    if body.size not in (None, "auto", size):
        raise invalid_field("size", f"model {found.name!r} draws {size} images: send size {size!r} or 'auto'")
    with named_as_openai(renamed):
        return Generation(body, sample_plan(SampleRequest.model_validate(fields), svc), size)


@router.post(
    "/v1/images/generations",
    summary="Generate images (OpenAI's Images API)",
    response_model=ImagesResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": EVENT_SCHEMA}},
            "description": "JSON; with `stream`, server-sent events: " + EVENTS,
        },
        **openai_error_responses(400, 404, 408, 413, 415, 503, 504),
    },
    openapi_extra=json_request_body(ImageGenerationRequest),
    tags=["openai"],
)
async def generate_images(request: ModelRequest) -> ImagesResponse | Response:
    """`n` images of the class the prompt names, as OpenAI's API answers (base64 PNGs in `data`),
    each with its seed and label, which the X-Seeds and X-Labels headers list too. The same request
    to /sample (prompt as `label`, guidance_scale as `guidance`) gives the same images."""
    gen = await request.parse(generation_input)
    sample, body = gen.sample, gen.body
    if body.stream:
        stream = open_stream(request, sample)
        events = generation_events(request, stream, body.partial_images or 0)
        return EventStream(events, on_close=stream.close, headers=sampled_headers(stream.items))
    images, items = await sampled(request, sample)
    answer = ImagesResponse(
        created=int(time.time()),
        data=[
            GeneratedImage(b64_json=b64_png(img), seed=it.seed, label=it.label)
            for img, it in zip(images, items)
        ],
        size=gen.size,
    )
    return Response(answer.model_dump_json(), media_type="application/json", headers=sampled_headers(items))
