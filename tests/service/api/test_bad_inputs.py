"""End to end: every kind of bad input gets its 4xx problem+json with an actionable detail, never a
traceback, and the service answers normally right after it."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import numpy as np
import pytest

from ..conftest import digit_like, png_bytes

PNG = png_bytes(digit_like())
PNG_B64 = base64.b64encode(PNG).decode()


def corrupt(png: bytes) -> bytes:
    """Flip bytes inside the pixel data (the IDAT chunk), keeping the header readable."""
    start = png.index(b"IDAT") + 8
    return png[:start] + bytes(b ^ 0xFF for b in png[start : start + 40]) + png[start + 40 :]


def latent(shape: list[int], value: float = 0.0, layer: int = 0) -> dict[str, Any]:
    data = base64.b64encode(np.full(shape, value, dtype="<f4").tobytes()).decode()
    return {"layer": layer, "shape": shape, "dtype": "float32", "data": data}


def image_upload(data: bytes, name: str = "x.png", **fields: str) -> dict[str, Any]:
    return {"files": {"image": (name, data, "application/octet-stream")}, "data": fields}


class Chunked:
    """A body without Content-Length (sent chunked), iterable any number of times."""

    def __init__(self, total: int, size: int = 64 * 1024) -> None:
        self.total, self.size = total, size

    def __iter__(self):
        for _ in range(self.total // self.size + 1):
            yield b" " * self.size


L8 = [8, 1, 1]  # the top latent layer of the MNIST models: zdim 8 at 1x1


def case(name: str, path: str, request: dict[str, Any], status: int, kind: str, words: str):
    """A bad request, the status and problem type it gets, and words its detail must contain."""
    return pytest.param(path, request, status, kind, words, id=name)


def raw(body: bytes) -> dict[str, Any]:
    return {"content": body, "headers": {"content-type": "application/json"}}


INVALID, IMAGE, TOO_LARGE = "invalid-input", "invalid-image", "body-too-large"
CASES = [
    case("not-an-image", "/reconstruct", image_upload(b"not an image"), 422, IMAGE, "not a PNG or JPEG"),
    case("empty-image", "/encode", image_upload(b""), 422, IMAGE, "empty"),
    case("corrupt-image", "/reconstruct", image_upload(corrupt(PNG)), 422, IMAGE, "corrupt"),
    case("truncated-image", "/encode", image_upload(PNG[: len(PNG) // 2]), 422, IMAGE, "truncated"),
    case("wrong-size", "/reconstruct", image_upload(png_bytes(digit_like(size=64))), 422, IMAGE,
         "expected a 32x32 grey-scale PNG or JPEG, got 64x64"),
    case("wrong-channels", "/encode", image_upload(png_bytes(digit_like(channels=3))), 422, IMAGE,
         "got 32x32 RGB"),
    case("rgba", "/encode", image_upload(png_bytes(np.zeros((32, 32, 4), np.uint8))), 422, IMAGE, "RGBA"),
    case("grey-to-rgb-model", "/encode", image_upload(PNG, model="tiny"), 422, IMAGE, "expected a 32x32 RGB"),
    case("bad-base64", "/encode", {"json": {"image_b64": "***"}}, 422, IMAGE, "not valid base64"),
    case("no-image-field", "/reconstruct", {"files": {"picture": ("x.png", PNG)}}, 422, INVALID,
         "file field named 'image'"),
    case("no-image-b64", "/reconstruct", {"json": {"layers": 1}}, 422, INVALID, "image_b64"),
    case("n-zero", "/sample", {"json": {"n": 0}}, 422, INVALID, "greater than or equal to 1"),
    case("n-too-large", "/sample", {"json": {"n": 1000}}, 422, INVALID, "limit of 64"),
    case("n-not-int", "/sample", {"json": {"n": 1.5}}, 422, INVALID, "integer"),
    case("temperature-negative", "/sample", {"json": {"temperature": -1}}, 422, INVALID, ">= 0"),
    case("temperature-too-high", "/sample", {"json": {"temperature": 5}}, 422, INVALID, "range [0, 2]"),
    case("temperature-nan", "/sample", raw(b'{"temperature": NaN}'), 422, INVALID, "finite"),
    case("temperature-infinite", "/sample", raw(b'{"temperature": Infinity}'), 422, INVALID, "finite"),
    case("temperature-list-length", "/sample", {"json": {"temperature": [1, 1]}}, 422, INVALID, "layers"),
    case("temperature-list-nan", "/sample", raw(b'{"temperature": [1.0, NaN]}'), 422, INVALID, "finite"),
    case("temperature-string", "/sample", {"json": {"temperature": "hot"}}, 422, INVALID, "number"),
    case("guidance-nan", "/sample", raw(b'{"label": 1, "guidance": {"mean": NaN}}'), 422, INVALID, "finite"),
    case("guidance-null-label", "/sample", {"json": {"label": None, "guidance": {"mean": 1}}}, 422, INVALID,
         "a label"),
    case("temperature-null", "/sample", {"json": {"temperature": None}}, 422, INVALID, "number"),
    case("guidance-too-strong", "/sample", {"json": {"label": 1, "guidance": {"mean": 1e6}}}, 422, INVALID,
         "above the limit"),
    case("label-unconditional", "/sample", {"json": {"model": "tiny", "label": 1}}, 422, INVALID,
         "unconditional"),
    case("label-out-of-range", "/sample", {"json": {"label": 10}}, 422, INVALID, "classes 0..9"),
    case("label-negative", "/sample", {"json": {"label": -3}}, 422, INVALID, "greater than or equal"),
    case("seed-negative", "/sample", {"json": {"seed": -1}}, 422, INVALID, "seed"),
    case("seed-too-large", "/sample", {"json": {"seed": 2**63}}, 422, INVALID, "seed"),
    case("timeout-zero", "/sample", {"json": {"timeout_ms": 0}}, 422, INVALID, "timeout_ms"),
    case("unknown-field", "/sample", {"json": {"n": 1, "temprature": 0.5}}, 422, INVALID, "temprature"),
    case("unknown-model", "/sample", {"json": {"model": "nope"}}, 404, "model-not-found", "served models"),
    case("unknown-model-image", "/encode", {"json": {"model": "nope", "image_b64": PNG_B64}}, 404,
         "model-not-found", "served models"),
    case("malformed-json", "/sample", raw(b'{"n": 1,'), 400, "malformed-body", "not valid JSON"),
    case("malformed-json-image", "/encode", raw(b'{"image_b64": '), 400, "malformed-body", "not valid JSON"),
    case("json-array", "/sample", {"json": [1, 2]}, 400, "malformed-body", "JSON object"),
    case("json-array-image", "/encode", {"json": [1]}, 400, "malformed-body", "JSON object"),
    case("wrong-content-type", "/reconstruct", {"content": b"x", "headers": {"content-type": "text/plain"}},
         415, "unsupported-media-type", "multipart/form-data"),
    case("layers-too-deep", "/reconstruct", {"json": {"image_b64": PNG_B64, "layers": 10_000}}, 422, INVALID,
         "latent layers"),
    case("encode-latents-too-many", "/encode", {"json": {"image_b64": PNG_B64, "latents": 10_000}}, 422,
         INVALID, "latent layers"),
    case("decode-wrong-shape", "/decode", {"json": {"latents": [latent([8, 2, 2])]}}, 422, INVALID, "shape"),
    case("decode-bad-base64", "/decode", {"json": {"latents": [{**latent(L8), "data": "@@"}]}}, 422, INVALID,
         "base64"),
    case("decode-short-data", "/decode", {"json": {"latents": [{**latent(L8), "data": "AAAA"}]}}, 422,
         INVALID, "bytes"),
    case("decode-nan-latent", "/decode", {"json": {"latents": [latent(L8, float("nan"))]}}, 422, INVALID,
         "finite"),
    case("decode-layer-order", "/decode", {"json": {"latents": [latent(L8, layer=1)]}}, 422, INVALID,
         "order"),
    case("decode-no-latents", "/decode", {"json": {"latents": []}}, 422, INVALID, "at least 1"),
    case("decode-dtype", "/decode", {"json": {"latents": [{**latent(L8), "dtype": "float16"}]}}, 422, INVALID,
         "float32"),
    case("stream-n-zero", "/sample/stream", {"json": {"n": 0}}, 422, INVALID, "greater than or equal to 1"),
    case("stream-label-out-of-range", "/sample/stream", {"json": {"label": 10}}, 422, INVALID,
         "classes 0..9"),
    case("stream-unknown-model", "/sample/stream", {"json": {"model": "nope"}}, 404, "model-not-found",
         "served models"),
    case("stream-malformed-json", "/sample/stream", raw(b'{"n": '), 400, "malformed-body", "not valid JSON"),
    case("interp-no-end", "/interpolate", {"json": {"start": 1}}, 422, INVALID, "end is missing"),
    case("interp-seed-and-image", "/interpolate",
         {"json": {"start": {"seed": 1, "image_b64": PNG_B64}, "end": 2}}, 422, INVALID, "not both"),
    case("interp-steps-one", "/interpolate", {"json": {"start": 1, "end": 2, "steps": 1}}, 422, INVALID,
         "greater than or equal to 2"),
    case("interp-steps-many", "/interpolate", {"json": {"start": 1, "end": 2, "steps": 65}}, 422, INVALID,
         "less than or equal to 64"),
    case("interp-layers-too-deep", "/interpolate", {"json": {"start": 1, "end": 2, "layers": 10_000}}, 422,
         INVALID, "latent layers"),
    case("interp-temperature-too-high", "/interpolate",
         {"json": {"start": 1, "end": 2, "temperature": 5}}, 422, INVALID, "range [0, 2]"),
    case("interp-label-unconditional", "/interpolate", {"json": {"model": "tiny", "start": 1, "end": 2,
         "label": 1}}, 422, INVALID, "unconditional"),
    case("interp-bad-base64", "/interpolate", {"json": {"start": {"image_b64": "***"}, "end": 2}}, 422, IMAGE,
         "start.image_b64 is not valid base64"),
    case("interp-wrong-size", "/interpolate", {"files": {"start": ("a.png", png_bytes(digit_like(size=64)))},
         "data": {"end": "2"}}, 422, IMAGE, "expected a 32x32 grey-scale"),
    case("interp-file-and-field", "/interpolate", {"files": {"end": ("a.png", PNG)},
         "data": {"start": "1", "end": "2"}}, 422, INVALID, "send end once"),
    case("interp-seed-negative", "/interpolate", {"json": {"start": -1, "end": 2}}, 422, INVALID,
         "greater than or equal to 0"),
    case("body-too-large", "/reconstruct", image_upload(b"x" * (600 * 1024)), 413, TOO_LARGE, "limit"),
    case("body-too-large-chunked", "/sample", {"content": Chunked(600 * 1024)}, 413, TOO_LARGE, "limit"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "request_kwargs", "status", "kind", "words"), CASES)
def test_bad_input_gets_a_problem_and_the_service_keeps_serving(
    client: httpx.Client, path: str, request_kwargs: dict, status: int, kind: str, words: str
) -> None:
    r = client.post(path, **request_kwargs)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["type"] == f"/problems/{kind}"
    assert body["status"] == status and body["title"] and body["instance"] == path
    assert words.lower() in body["detail"].lower(), body["detail"]
    assert "Traceback" not in r.text and 'File "' not in r.text
    if status == 422 and kind == "invalid-input":
        assert body["errors"] and all({"loc", "msg", "type"} <= set(e) for e in body["errors"])
    # ... and the next request is served normally.
    ok = client.post("/sample", json={"n": 1, "seed": 1})
    assert ok.status_code == 200, ok.text


def test_unknown_route_and_method_are_problems(client: httpx.Client) -> None:
    r = client.get("/nope")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == "about:blank" and "/docs" in r.json()["detail"]
    r = client.get("/sample")
    assert r.status_code == 405
    assert r.headers["content-type"] == "application/problem+json"


def test_problem_type_uris_resolve_to_a_description(client: httpx.Client) -> None:
    r = client.post("/sample", json={"n": 0})
    page = client.get(r.json()["type"])
    assert page.status_code == 200 and "Invalid input" in page.text


def test_failures_are_counted_by_reason(server, client: httpx.Client) -> None:
    from ..conftest import metric_value

    before = server.metrics()
    client.post("/sample", json={"n": 0})
    client.post("/sample", json={"model": "nope"})
    client.post("/sample", content=json.dumps({"n": 1}).encode() + b"x" * (600 * 1024))
    after = server.metrics()
    for reason in ("invalid", "not_found", "too_large"):
        delta = metric_value(after, "vae_request_failures_total", reason=reason) - metric_value(
            before, "vae_request_failures_total", reason=reason
        )
        assert delta == 1, reason
    assert metric_value(after, "vae_requests_total", endpoint="/sample", code="422") >= 1
    # The 413 was answered before routing and is still labelled with its endpoint.
    assert metric_value(after, "vae_requests_total", endpoint="/sample", code="413") >= 1
