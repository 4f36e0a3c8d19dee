"""The request side of the client: each API call as a `Call` (what to send, how to read the answer,
its time budget), the options a call takes, and the retry policy. Shared by Client and AsyncClient,
so the two differ only in how they wait."""

from __future__ import annotations

import io
import json
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Generic, Literal, TypedDict, TypeVar

import httpx
import numpy as np
from PIL import Image

from model.imageio import FAST_PNG_LEVEL, png_bytes

from ..wire import tensor_b64
from .errors import APIError, ConnectionFailed
from .results import (
    Encoding,
    Images,
    Interpolation,
    ModelInfo,
    Reconstruction,
    parse_encoding,
    parse_images,
    parse_interpolation,
    parse_models,
    parse_reconstruction,
)

# Without a per-call timeout the service's own deadline (60 s by default) ends every request; the
# read timeout only guards against a server that stopped answering altogether.
UNBOUNDED_READ_S = 600.0
CONNECT_S = 10.0
GRACE_S = 2.0  # past the deadline sent, time for the service's 504 to arrive

T = TypeVar("T")
# An image to upload: a file path, PNG or JPEG bytes, a uint8 array (H, W) or (H, W, C), or a PIL image.
ImageInput = str | Path | bytes | np.ndarray | Image.Image
# A request's priority (the X-Priority header): high only for API keys the service allows it.
Priority = Literal["low", "normal", "high"]


class CallOptions(TypedDict, total=False):
    model: str  # the service's default model when left out
    seed: int  # image i uses seed + i; random when left out (the seeds used come back)
    timeout: float  # seconds for the whole call, retries included; sent as the deadline


class SampleOptions(CallOptions, total=False):
    temperature: float | Sequence[float]  # one for every latent layer, or one per layer (top-down)
    # Left out, the model's sampling defaults apply (for a class-conditional model, each image's
    # label from its seed); label=None asks for the unconditional prior, guidance=None for none.
    label: int | str | None  # a class index or one of its names (Models: classes)
    guidance: float | tuple[float, float] | None  # (mean, variance) weights; one number: both


class InterpolateOptions(SampleOptions, total=False):
    layers: int  # the top latent layers interpolated (all when left out)


class UpscaleOptions(SampleOptions, total=False):
    low_res_noise: float  # std of the noise on the low-resolution input; the model's when left out
    stage: int  # when `model` is a cascade: which super-resolution stage (default 1)


class ReconstructOptions(CallOptions, total=False):
    layers: int  # top latent layers from the image's posterior (all when left out)
    temperature: float | Sequence[float]
    label: int | str


class EncodeOptions(CallOptions, total=False):
    latents: int  # return the z of this many top layers
    label: int | str


@dataclass
class Call(Generic[T]):
    """One API call: what to send, how to read the answer, and its time budget."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    fields: dict[str, Any] | None = None  # the JSON body, or the multipart text fields with `files`
    files: dict[str, bytes] | None = None  # uploaded images by field name: the body is multipart
    timeout: float | None = None

    def request(self, deadline: float | None) -> dict[str, Any]:
        """httpx.request arguments for one try; what is left of the deadline goes as timeout_ms."""
        args: dict[str, Any] = {"method": self.method, "url": self.path}
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0.001)
        read_s = UNBOUNDED_READ_S if remaining is None else remaining + GRACE_S
        args["timeout"] = httpx.Timeout(read_s, connect=min(CONNECT_S, read_s))
        if self.fields is None:
            return args
        body = dict(self.fields)
        if remaining is not None:
            body["timeout_ms"] = max(1, math.ceil(1000 * remaining))
        if not self.files:
            args["json"] = body
        else:  # text fields are read as JSON by the service, so "3" is a number and '"3"' a string
            args["data"] = {k: json.dumps(v) for k, v in body.items()}
            args["files"] = {k: (k, data, "application/octet-stream") for k, data in self.files.items()}
        return args


# Options whose None is a value (the unconditional prior, no guidance) and is sent as null.
NULLABLE = frozenset({"label", "guidance"})


def _fields(options: Mapping[str, Any]) -> tuple[dict[str, Any], float | None]:
    """The fields a caller gave, in the API's form, and the call's timeout."""
    body = {k: v for k, v in options.items() if k != "timeout" and (v is not None or k in NULLABLE)}
    guidance = body.get("guidance")
    if isinstance(guidance, int | float):
        body["guidance"] = {"mean": float(guidance), "variance": float(guidance)}
    elif guidance is not None:
        body["guidance"] = {"mean": float(guidance[0]), "variance": float(guidance[1])}
    temperature = body.get("temperature")
    if temperature is not None and not isinstance(temperature, int | float):
        body["temperature"] = [float(t) for t in temperature]
    return body, options.get("timeout")


def image_bytes(image: ImageInput) -> bytes:
    """An image to upload as PNG or JPEG bytes (arrays and PIL images are encoded as PNG)."""
    if isinstance(image, bytes):
        return image
    if isinstance(image, str | Path):
        return Path(image).read_bytes()
    if isinstance(image, Image.Image):
        buf = io.BytesIO()
        image.save(buf, format="PNG", compress_level=FAST_PNG_LEVEL)
        return buf.getvalue()
    array = np.asarray(image)
    return png_bytes(array[..., None] if array.ndim == 2 else array, compress_level=FAST_PNG_LEVEL)


def latent_fields(latents: Sequence[np.ndarray] | Encoding) -> list[dict[str, Any]]:
    """The top layers' z (as Encoding.latents holds them) in the API's form."""
    zs = latents.latents if isinstance(latents, Encoding) else latents
    return [
        {"layer": i, "shape": list(np.shape(z)), "dtype": "float32", "data": tensor_b64(np.asarray(z))}
        for i, z in enumerate(zs)
    ]


def sample_call(n: int, options: Mapping[str, Any]) -> Call[Images]:
    body, timeout = _fields(options)
    return Call("POST", "/sample", parse_images, {"n": n, **body}, timeout=timeout)


def reconstruct_call(image: ImageInput, options: Mapping[str, Any]) -> Call[Reconstruction]:
    body, timeout = _fields(options)
    return Call("POST", "/reconstruct", parse_reconstruction, body, {"image": image_bytes(image)}, timeout)


def upscale_call(image: ImageInput, options: Mapping[str, Any]) -> Call[Images]:
    body, timeout = _fields(options)
    return Call("POST", "/upscale", parse_images, body, {"image": image_bytes(image)}, timeout)


def encode_call(image: ImageInput, options: Mapping[str, Any]) -> Call[Encoding]:
    body, timeout = _fields(options)
    return Call("POST", "/encode", parse_encoding, body, {"image": image_bytes(image)}, timeout)


def decode_call(latents: Sequence[np.ndarray] | Encoding, options: Mapping[str, Any]) -> Call[Images]:
    body, timeout = _fields(options)
    return Call("POST", "/decode", parse_images, {"latents": latent_fields(latents), **body}, timeout=timeout)


def interpolate_call(
    start: int | ImageInput, end: int | ImageInput, steps: int, options: Mapping[str, Any]
) -> Call[Interpolation]:
    """Each end a seed (an int) or an image; images go as multipart files, seeds as fields."""
    body, timeout = _fields(options)
    body["steps"] = steps
    files = {}
    for name, end_ in (("start", start), ("end", end)):
        if isinstance(end_, int) and not isinstance(end_, bool):
            body[name] = end_
        else:
            files[name] = image_bytes(end_)
    return Call("POST", "/interpolate", parse_interpolation, body, files, timeout)


def models_call() -> Call[list[ModelInfo]]:
    return Call("GET", "/v1/models", parse_models)


def model_call(name: str) -> Call[ModelInfo]:
    return Call("GET", f"/v1/models/{name}", lambda r: ModelInfo.from_json(r.json()))


# --------------------------------------------------------------------------------------------
# Retries
# --------------------------------------------------------------------------------------------

# Written here, not with a retry library: httpx's transports retry only failed connections, and
# tenacity (a new dependency for a few lines) would not know that each try must send what is left
# of the call's deadline (Call.request) or that a Retry-After past that deadline ends the call now.

# Failures before any answer: nothing was computed, so trying again is safe.
RETRIED_FAILURES = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError)


# Answers that say "not now": the service is busy (503) or this key is over its limits (429).
RETRIED_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of 503 and 429 answers and failed connections: exponential backoff with jitter, at
    least Retry-After, never past the call's deadline."""

    retries: int = 5  # of 503 and 429 answers: the service is there, and says when to come back
    connect_retries: int = 2  # of failed connections: a restart, or a wrong URL that should fail fast
    backoff_s: float = 0.25
    max_wait_s: float = 30.0  # a longer Retry-After ends the call with the 503 or 429

    def wait(self, attempt: int, response: httpx.Response | None, deadline: float | None) -> float | None:
        """Seconds before the next try, or None to stop (response None: the connection failed)."""
        if response is not None and response.status_code not in RETRIED_STATUSES:
            return None
        if attempt >= (self.retries if response is not None else self.connect_retries):
            return None
        wait = min(self.max_wait_s, self.backoff_s * 2**attempt) * random.uniform(0.5, 1.0)
        hinted = retry_after_s(response) if response is not None else None
        if hinted is not None:
            if hinted > self.max_wait_s:
                return None
            wait = max(wait, hinted)
        if deadline is not None and time.monotonic() + wait >= deadline:
            return None
        return wait


def retry_after_s(response: httpx.Response) -> float | None:
    """The Retry-After header in seconds (delay-seconds or an HTTP date), None when absent or bad."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds())
    except (TypeError, ValueError):
        return None


def answer(call: Call[T], response: httpx.Response | None, failure: Exception | None, url: str) -> T:
    """The call's result from the last try's answer, or its error."""
    if response is None:
        raise ConnectionFailed(f"no answer from {url}: {failure or 'connection failed'}") from failure
    if response.is_success:
        return call.parse(response)
    raise APIError.from_response(response)
