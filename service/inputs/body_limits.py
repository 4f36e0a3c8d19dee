"""The most bytes each model endpoint's body can need, from the shapes of the served models.

max_body_bytes (16 MiB) is sized for the largest models' images; the bundled 32x32 digit model's
largest valid /encode body is under 2 MiB and a /sample body a few kilobytes. Reading a body to the
global limit and scanning it before refusing it costs the service CPU in proportion to its size
(the worst bodies of service/bench/hostile.py), much of it holding the GIL that the event loop and
the model's thread need. Each endpoint's own limit refuses such a body by its Content-Length, before any
of it is read (BodyGuardMiddleware), or as soon as the bytes read pass it.

A limit is generous by construction, never tight: an image counts 3x its raw bytes (a PNG of an
8-bit image is at most its raw size plus per-row and per-chunk overhead; a JPEG at quality 100 can
pass its raw size) plus the metadata the service accepts (max_image_metadata_bytes) and the chunk
headers, all as base64 (the JSON form); JSON fields get 64 bytes for each of the max_json_values
values a body may hold.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from ..registry import ServedModel
from ..settings import Settings

# Chunk and segment headers of an image file: a 16 MiB PNG in 8 KiB IDAT chunks has 2,048 of 12 bytes.
IMAGE_HEADER_BYTES = 64 * 2**10
JSON_BYTES_PER_VALUE = 64  # "1.2345678901234567e-05", a key, indentation and separators


def base64_bytes(nbytes: int) -> int:
    return 4 * math.ceil(nbytes / 3)


def image_file_bytes(size: int, channels: int, settings: Settings) -> int:
    """The largest PNG or JPEG of a size x size image the service accepts, as base64."""
    raw = size * size * channels
    return base64_bytes(3 * raw + settings.max_image_metadata_bytes + IMAGE_HEADER_BYTES)


def endpoint_body_limits(models: Iterable[ServedModel], settings: Settings) -> dict[str, int]:
    """{path: most body bytes} of the model endpoints for these models, each at most max_body_bytes."""
    models = list(models)
    fields = JSON_BYTES_PER_VALUE * settings.max_json_values
    image = max((image_file_bytes(m.hp.image_size, m.hp.image_channels, settings) for m in models), default=0)
    low_res = max(
        (image_file_bytes(m.hp.low_res, m.hp.image_channels, settings) for m in models if m.hp.low_res),
        default=0,
    )
    # /decode's latents: base64 float32 of every latent layer, and a small JSON object per layer.
    latents = max(
        (base64_bytes(4 * sum(math.prod(s) for s in m.vae.latent_shapes())) for m in models), default=0
    )
    limits = {
        "/sample": fields,
        "/sample/stream": fields,
        "/v1/images/generations": fields,
        "/encode": fields + image,
        "/reconstruct": fields + image,
        "/interpolate": fields + 2 * image,
        "/upscale": fields + low_res,
        "/decode": fields + latents,
    }
    return {path: min(limit, settings.max_body_bytes) for path, limit in limits.items()}
