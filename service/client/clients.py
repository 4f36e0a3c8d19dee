"""Client (blocking) and AsyncClient (asyncio): one connection pool each, the same calls."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import numpy as np

from .. import __version__
from .calls import (
    RETRIED_FAILURES,
    Call,
    EncodeOptions,
    ImageInput,
    InterpolateOptions,
    Priority,
    ReconstructOptions,
    RetryPolicy,
    SampleOptions,
    UpscaleOptions,
    answer,
    decode_call,
    encode_call,
    interpolate_call,
    model_call,
    models_call,
    reconstruct_call,
    sample_call,
    upscale_call,
)
from .errors import ConnectionFailed
from .results import Encoding, Images, Interpolation, ModelInfo, Reconstruction

if TYPE_CHECKING:
    from typing_extensions import Unpack

DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV = "VDVAE_URL"
API_KEY_ENV = "VDVAE_API_KEY"

T = TypeVar("T")


class _ClientBase:
    _http_class: type[httpx.Client] | type[httpx.AsyncClient]

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        priority: Priority | None = None,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """url: VDVAE_URL, else http://127.0.0.1:8000. api_key: VDVAE_API_KEY, sent as a bearer
        token. timeout: the default of every call's `timeout=` (None: the service's deadline).
        priority: sent with every call as X-Priority (low for bulk work; high for keys allowed it);
        None: the service's normal."""
        self.url = (url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
        api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        headers = {"user-agent": f"vdvae-client/{__version__}", "accept": "application/json"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        if priority is not None:
            headers["x-priority"] = priority
        extra = {} if transport is None else {"transport": transport}
        self._http = self._http_class(base_url=self.url, headers=headers, **extra)

    def _deadline(self, call: Call[Any]) -> float | None:
        timeout = call.timeout if call.timeout is not None else self.timeout
        return None if timeout is None else time.monotonic() + timeout


class Client(_ClientBase):
    """The service over HTTP, blocking. A context manager; one connection pool per client."""

    _http_class = httpx.Client
    _http: httpx.Client

    def _run(self, call: Call[T]) -> T:
        deadline = self._deadline(call)
        for attempt in itertools.count():
            response, failure = None, None
            try:
                response = self._http.request(**call.request(deadline))
            except RETRIED_FAILURES as e:
                failure = e
            except httpx.HTTPError as e:
                raise ConnectionFailed(f"no answer from {self.url}: {e or type(e).__name__}") from e
            wait = self.retry.wait(attempt, response, deadline)
            if wait is None:
                return answer(call, response, failure, self.url)
            time.sleep(wait)
        raise AssertionError("unreachable")

    def sample(self, n: int = 1, **options: Unpack[SampleOptions]) -> Images:
        """n images from the prior; image i uses seed + i."""
        return self._run(sample_call(n, options))

    def reconstruct(self, image: ImageInput, **options: Unpack[ReconstructOptions]) -> Reconstruction:
        """The top `layers` latent layers from the image's posterior, the rest from the prior."""
        return self._run(reconstruct_call(image, options))

    def upscale(self, image: ImageInput, **options: Unpack[UpscaleOptions]) -> Images:
        """A super-resolution model's image of a low-resolution `image` (of the model's low_res size);
        `model` may name a cascade (then its `stage`, default 1)."""
        return self._run(upscale_call(image, options))

    def encode(self, image: ImageInput, **options: Unpack[EncodeOptions]) -> Encoding:
        """Per-layer KL, rate, distortion and ELBO of the image; with latents=k, the top k layers' z."""
        return self._run(encode_call(image, options))

    def decode(self, latents: Sequence[np.ndarray] | Encoding, **options: Unpack[SampleOptions]) -> Images:
        """The image whose top layers are `latents` (Encoding.latents), the rest from the prior."""
        return self._run(decode_call(latents, options))

    def interpolate(
        self,
        start: int | ImageInput,
        end: int | ImageInput,
        steps: int = 8,
        **options: Unpack[InterpolateOptions],
    ) -> Interpolation:
        """`steps` images from `start` to `end` (each a seed or an image), through the latent layers."""
        return self._run(interpolate_call(start, end, steps, options))

    def models(self) -> list[ModelInfo]:
        return self._run(models_call())

    def model(self, name: str) -> ModelInfo:
        return self._run(model_call(name))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_ClientBase):
    """The same calls as Client, each a coroutine; for many concurrent requests."""

    _http_class = httpx.AsyncClient
    _http: httpx.AsyncClient

    async def _run(self, call: Call[T]) -> T:
        deadline = self._deadline(call)
        for attempt in itertools.count():
            response, failure = None, None
            try:
                response = await self._http.request(**call.request(deadline))
            except RETRIED_FAILURES as e:
                failure = e
            except httpx.HTTPError as e:
                raise ConnectionFailed(f"no answer from {self.url}: {e or type(e).__name__}") from e
            wait = self.retry.wait(attempt, response, deadline)
            if wait is None:
                return answer(call, response, failure, self.url)
            await asyncio.sleep(wait)
        raise AssertionError("unreachable")

    async def sample(self, n: int = 1, **options: Unpack[SampleOptions]) -> Images:
        return await self._run(sample_call(n, options))

    async def reconstruct(self, image: ImageInput, **options: Unpack[ReconstructOptions]) -> Reconstruction:
        return await self._run(reconstruct_call(image, options))

    async def upscale(self, image: ImageInput, **options: Unpack[UpscaleOptions]) -> Images:
        return await self._run(upscale_call(image, options))

    async def encode(self, image: ImageInput, **options: Unpack[EncodeOptions]) -> Encoding:
        return await self._run(encode_call(image, options))

    async def decode(
        self, latents: Sequence[np.ndarray] | Encoding, **options: Unpack[SampleOptions]
    ) -> Images:
        return await self._run(decode_call(latents, options))

    async def interpolate(
        self,
        start: int | ImageInput,
        end: int | ImageInput,
        steps: int = 8,
        **options: Unpack[InterpolateOptions],
    ) -> Interpolation:
        return await self._run(interpolate_call(start, end, steps, options))

    async def models(self) -> list[ModelInfo]:
        return await self._run(models_call())

    async def model(self, name: str) -> ModelInfo:
        return await self._run(model_call(name))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
