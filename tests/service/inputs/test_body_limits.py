"""Each model endpoint refuses a body larger than the served models can need, by its Content-Length,
and never refuses a valid one: the largest valid image, latents and JSON bodies pass."""

from __future__ import annotations

import base64
import json
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from model.checkpoint import load_model
from service import Settings
from service.bench.hostile import huge_temperature_list, million_chunk_png, png_chunk
from service.inputs.body_limits import endpoint_body_limits
from service.registry import ServedModel

from ..conftest import BUNDLED, RunningServer, digit_like, png_bytes, running_server

MNIST = ServedModel("mnist", load_model(BUNDLED, device="cpu"))


def worst_valid_png(size: int, channels: int, metadata_bytes: int) -> bytes:
    """A valid 8-bit PNG as large as the service accepts: noise stored without compression, in 8 KiB
    IDAT chunks, carrying `metadata_bytes` of text chunks."""
    rows = np.random.default_rng(0).integers(0, 256, (size, size * channels), dtype=np.uint8)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)  # filter byte 0 per row
    data = zlib.compress(raw, level=0)
    mode = {1: 0, 3: 2}[channels]  # PNG colour type: grey or RGB
    header = png_chunk(b"IHDR", size.to_bytes(4, "big") * 2 + bytes([8, mode, 0, 0, 0]))
    per_chunk = 60_000
    text = [png_chunk(b"tEXt", b"k\x00" + b"v" * (per_chunk - 2)) for _ in range(metadata_bytes // per_chunk)]
    idat = [png_chunk(b"IDAT", data[i : i + 8192]) for i in range(0, len(data), 8192)]
    return b"\x89PNG\r\n\x1a\n" + header + b"".join(text) + b"".join(idat) + png_chunk(b"IEND", b"")


def test_the_largest_valid_bodies_fit_their_endpoints_limits() -> None:
    settings = Settings()
    limits = endpoint_body_limits([MNIST], settings)
    png = worst_valid_png(32, 1, settings.max_image_metadata_bytes - 60_000)
    fields = {"seed": 2**62, "label": 9, "temperature": [1.25] * MNIST.num_layers, "layers": 3}
    image_json = json.dumps({"image_b64": base64.b64encode(png).decode(), **fields}, indent=8).encode()
    assert len(image_json) <= limits["/encode"] == limits["/reconstruct"]
    assert 2 * len(image_json) <= limits["/interpolate"]  # two endpoint images
    latents = [
        {
            "layer": i,
            "shape": list(s),
            "dtype": "float32",
            "data": base64.b64encode(np.ones(s, "<f4")).decode(),
        }
        for i, s in enumerate(MNIST.vae.latent_shapes())
    ]
    decode = json.dumps({"latents": latents, **fields}, indent=8).encode()
    assert len(decode) <= limits["/decode"]
    sample = json.dumps({"n": 64, "seed": [2**62] * 64, "temperature": [1.2345678901234567] * 4000}, indent=8)
    assert len(sample) <= limits["/sample"] == limits["/sample/stream"]
    # The worst inputs of vdvae bench stress are far over.
    assert len(million_chunk_png()) > 8 * limits["/encode"]
    assert len(huge_temperature_list()) > 50 * limits["/sample"]
    assert max(limits.values()) <= settings.max_body_bytes


def test_each_limit_is_at_most_max_body_bytes() -> None:
    limits = endpoint_body_limits([MNIST], Settings(max_body_bytes=1_000_000))
    assert limits["/sample"] == 64 * Settings().max_json_values  # under the cap: its own
    assert limits["/encode"] == limits["/interpolate"] == 1_000_000


@pytest.fixture(scope="module")
def default_limits(model_dir: Path) -> Iterator[RunningServer]:
    """A server with the default body limits (16 MiB and the endpoints' own)."""
    with running_server(model_dir) as server:
        yield server


def test_a_body_past_its_endpoint_limit_is_refused_by_its_content_length(
    default_limits: RunningServer,
) -> None:
    served = default_limits.app.state.service.registry.served()
    limit = endpoint_body_limits(served, Settings())["/sample"]
    json_type = {"content-type": "application/json"}
    with default_limits.client() as client:
        padded = b'{"n": 1, "seed": 5' + b" " * (limit + 1) + b"}"  # valid JSON, just over the limit
        r = client.post("/sample", content=padded, headers=json_type)
        assert r.status_code == 413
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["detail"] == (
            f"the body has {len(padded)} bytes; the limit of /sample for the served models is {limit} bytes"
        )
        # Under the limit, the same request is answered.
        ok = client.post(
            "/sample", content=padded[: limit - 20] + b"}", headers={"content-type": "application/json"}
        )
        assert ok.status_code == 200, ok.text
        # The keep-alive connection is still usable after the 413.
        assert client.post("/sample", json={"n": 1}).status_code == 200


def test_the_million_chunk_png_is_refused_before_it_is_parsed(default_limits: RunningServer) -> None:
    """Refused by its size (413) rather than by the parsing caps (422, "metadata"), after the pause
    that holds a client looping such bodies to a few a second."""
    with default_limits.client() as client:
        t0 = time.monotonic()
        r = client.post("/encode", files={"image": ("x.png", million_chunk_png(png_bytes(digit_like())))})
        assert time.monotonic() - t0 >= Settings().oversized_body_delay_s
        assert r.status_code == 413
        assert "the limit of /encode for the served models" in r.json()["detail"]
        # A real digit upload to the same endpoint is served.
        ok = client.post("/encode", files={"image": ("x.png", png_bytes(digit_like()))}, data={"seed": "0"})
        assert ok.status_code == 200, ok.text


def test_endpoint_limits_can_be_turned_off(model_dir: Path) -> None:
    with running_server(model_dir, endpoint_body_limits=False, warmup=False) as server:
        body = b'{"n": 1' + b" " * 300_000 + b"}"
        r = httpx.post(server.url + "/sample", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 200, r.text
