"""POST /v1/images/generations with `stream`: /sample/stream's stages as OpenAI's server-sent events.

The top-down pass gives a preview per resolution (a cascade, one per stage); `partial_images` k
takes k of them, spread over the pass, as `image_generation.partial_image` events (one per image,
in request order, `partial_image_index` 0..k-1), then one `image_generation.completed` event per
image with the final image: the non-streamed answer's. The stream then ends, as OpenAI's does. A
pass with fewer previews than k sends fewer, as OpenAI's API may. A problem after the stream began
is an `error` event whose `error` is OpenAI's error object (the SDK raises it as an APIError); a
client that leaves stops the work as /sample/stream's does.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from ...errors import ServiceError, count_failure, openai_error
from ..answers import b64_png
from ..images.streams import ImageStream, Shown, sse
from ..openapi import inlined_schema
from ..routing import ModelRequest
from .bodies import CompletedEvent, ErrorEvent, PartialImageEvent, Usage

USAGE = Usage().model_dump()  # no tokens here

EVENTS = """one `image_generation.partial_image` event per image and preview
(`partial_images` of them), then one `image_generation.completed` event per image; an `error`
event (`{"type": "error", "error": {...}}`) if the request fails after the stream began."""
KINDS = ("image_generation.partial_image", "image_generation.completed", "error")
# One server-sent event, as /sample/stream's EVENT_SCHEMA: its name and its JSON data.
EVENT_SCHEMA = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "enum": list(KINDS)},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {
                "anyOf": [inlined_schema(m) for m in (PartialImageEvent, CompletedEvent, ErrorEvent)]
            },
        },
    },
    "required": ["data"],
}


def spread(k: int, previews: int) -> dict[int, int]:
    """{stage index: partial_image_index} of k previews of `previews`, spread over the pass (the
    coarsest left out first: it shows least)."""
    k = min(k, previews)
    chosen = sorted({(j + 1) * previews // (k + 1) for j in range(k)})
    return {stage: i for i, stage in enumerate(chosen)}


def size_of(image: Any) -> str:
    height, width = image.shape[:2]
    return f"{width}x{height}"


def image_events(kind: str, shown: Shown, stream: ImageStream, **fields: Any) -> list[bytes]:
    now = int(time.time())
    common = {"created_at": now, "background": "opaque", "output_format": "png", "quality": "auto"}
    return [
        sse(
            kind,
            {
                "type": kind,
                "b64_json": b64_png(image),
                "size": size_of(image),
                **common,
                **fields,
                "seed": it.seed,
                "label": it.label,
            },
        )
        for image, it in zip(shown.images, stream.items)
    ]


async def generation_events(
    request: ModelRequest, stream: ImageStream, partial_images: int
) -> AsyncIterator[bytes]:
    """The stream's stages as OpenAI's image generation events."""
    chosen = spread(partial_images, stream.count - 1)
    try:
        async for shown in stream.stages():
            if shown.final:
                for event in image_events("image_generation.completed", shown, stream, usage=USAGE):
                    yield event
            elif shown.index in chosen:
                index = chosen[shown.index]
                for event in image_events(
                    "image_generation.partial_image", shown, stream, partial_image_index=index
                ):
                    yield event
    except ServiceError as e:
        count_failure(request, e.reason)
        yield sse(
            "error", {"type": "error", **openai_error(e.status, e.detail, e.slug, e.extra.get("errors"))}
        )
