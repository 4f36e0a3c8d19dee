"""How the model endpoints answer: JSON with base64 PNGs by default, or the PNG itself (a grid for
several images) for `Accept: image/png`, with each image's seed and label in the headers.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Sequence
from typing import Protocol

import numpy as np
from fastapi import Request, Response

from model.imageio import fast_png, grid_columns, grid_png

from ..batching.items import Image
from ..registry import ServedCascade, ServedModel
from .bodies import ImageResponse, SampledImage


class Sampled(Protocol):
    """An item whose image is answered with its seed and label (a sample, decode or upscale item)."""

    @property
    def seed(self) -> int: ...

    @property
    def label(self) -> int | None: ...


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


def encode_png(image: np.ndarray) -> bytes:
    """uint8 (H, W, C) with C in {1, 3} -> PNG bytes, compressed at the cheapest zlib level (the
    image's own when it carries them)."""
    png = getattr(image, "png", None)
    return png if png is not None else fast_png(image)


def b64_png(image: np.ndarray) -> str:
    return base64.b64encode(encode_png(image)).decode("ascii")


def sampled_data(images: Sequence[Image], items: Sequence[Sampled]) -> list[dict[str, object]]:
    """Each sampled image as the answers carry it (/sample, its stream's events): its base64 PNG,
    and the seed and label of its item."""
    return [{"b64_json": b64_png(img), "seed": it.seed, "label": it.label} for img, it in zip(images, items)]


def labels_header(labels: Sequence[int | None]) -> dict[str, str]:
    """X-Labels: each image's label, comma-separated, "null" for the unconditional prior."""
    return {"X-Labels": ",".join("null" if y is None else str(y) for y in labels)}


def sampled_headers(items: Sequence[Sampled]) -> dict[str, str]:
    """X-Seeds and X-Labels of sampled images, for answers that send them later (streams, JSON)."""
    return {"X-Seeds": ",".join(str(it.seed) for it in items), **labels_header([it.label for it in items])}


def png_response(
    images: Sequence[Image],
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
    request: Request, model: ServedModel | ServedCascade, images: Sequence[Image], items: Sequence[Sampled]
) -> ImageResponse | Response:
    """The answer of an endpoint that samples: JSON with each image's seed and label, or the PNG
    (a grid for several) with X-Seeds and X-Labels."""
    if prefers_png(request):
        return png_response(images, [it.seed for it in items], labels_header([it.label for it in items]))
    return ImageResponse(
        created=int(time.time()),
        model=model.name,
        data=[SampledImage(**d) for d in sampled_data(images, items)],
    )
