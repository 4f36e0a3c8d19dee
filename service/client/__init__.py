"""A Python client of the service: `Client` (blocking) and `AsyncClient` (asyncio), on httpx.

    from service.client import Client

    with Client() as vdvae:                          # VDVAE_URL, else http://127.0.0.1:8000
        threes = vdvae.sample(16, label=3, seed=1)   # Images: .arrays() uint8 (16, H, W, C), .seeds
        threes[0].save("three.png")                  # the PNG exactly as the service encoded it
        enc = vdvae.encode("digit.png", latents=2)   # .kl_bits per layer, .elbo_bits_per_dim, .latents
        again = vdvae.decode(enc.latents, seed=0)    # the top 2 layers given, the rest from the prior
        path = vdvae.interpolate(1, "digit.png", 8)  # a seed's sample to an image, in 8 steps

Options a call leaves out are not sent, so the service's own defaults apply (a model's sampling
defaults: for a class-conditional model, each image's label from its seed); `label=None` asks for
the unconditional prior and `guidance=None` for no guidance. A 503 (queue full, not ready,
draining), a 429 (the API key over its rate or its queued images) or a connection that fails before
any answer is retried with exponential backoff and jitter, never sooner than the answer's
Retry-After. `timeout=` (seconds) bounds a whole call, retries included, and each try sends what is
left of it as the request's deadline (`timeout_ms`), so the service never computes an answer nobody
waits for. `priority=` ("low" for bulk work, "high" for the keys allowed it) is sent with every
call as X-Priority. Any other error raises `APIError` with the problem's status, title and detail;
a failed connection raises `ConnectionFailed`.
Imports numpy, Pillow and httpx, never torch.
"""

from .calls import (
    EncodeOptions,
    ImageInput,
    InterpolateOptions,
    Priority,
    ReconstructOptions,
    RetryPolicy,
    SampleOptions,
)
from .clients import API_KEY_ENV, DEFAULT_URL, URL_ENV, AsyncClient, Client
from .errors import APIError, ClientError, ConnectionFailed
from .results import Encoding, GeneratedImage, Images, Interpolation, ModelInfo, Reconstruction

__all__ = [
    "API_KEY_ENV",
    "DEFAULT_URL",
    "URL_ENV",
    "APIError",
    "AsyncClient",
    "Client",
    "ClientError",
    "ConnectionFailed",
    "EncodeOptions",
    "Encoding",
    "GeneratedImage",
    "ImageInput",
    "Images",
    "InterpolateOptions",
    "Interpolation",
    "ModelInfo",
    "Priority",
    "ReconstructOptions",
    "Reconstruction",
    "RetryPolicy",
    "SampleOptions",
]
