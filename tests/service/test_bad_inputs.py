"""End to end: every kind of bad input gets its 4xx problem+json with an actionable detail, never a
traceback, and the service answers normally right after it."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import numpy as np
import pytest

from .conftest import digit_like, png_bytes

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


def chunks(total: int, size: int = 64 * 1024):
    for _ in range(total // size + 1):
        yield b" " * size


# (id, method, path, request kwargs, status, problem type, words the detail must contain)
CASES: list[tuple[str, str, str, dict[str, Any], int, str, str]] = [
    ("not-an-image", "POST", "/reconstruct", image_upload(b"hello, not an image"), 422, "invalid-image", "not a PNG or JPEG"),
    ("empty-image", "POST", "/encode", image_upload(b""), 422, "invalid-image", "empty"),
    ("corrupt-image", "POST", "/reconstruct", image_upload(corrupt(PNG)), 422, "invalid-image", "corrupt"),
    ("truncated-image", "POST", "/encode", image_upload(PNG[: len(PNG) // 2]), 422, "invalid-image", "truncated"),
    ("wrong-size", "POST", "/reconstruct", image_upload(png_bytes(digit_like(size=64))), 422, "invalid-image",
     "expected a 32x32 grey-scale PNG or JPEG, got 64x64"),
    ("wrong-channels", "POST", "/encode", image_upload(png_bytes(digit_like(channels=3))), 422, "invalid-image",
     "got 32x32 RGB"),
    ("rgba", "POST", "/encode", image_upload(png_bytes(np.zeros((32, 32, 4), np.uint8))), 422, "invalid-image",
     "RGBA"),
    ("grey-to-rgb-model", "POST", "/encode", image_upload(PNG, model="tiny"), 422, "invalid-image",
     "expected a 32x32 RGB"),
    ("bad-base64", "POST", "/encode", {"json": {"image_b64": "***"}}, 422, "invalid-image", "not valid base64"),
    ("no-image-field", "POST", "/reconstruct", {"files": {"picture": ("x.png", PNG)}}, 422, "invalid-input",
     "file field named 'image'"),
    ("no-image-b64", "POST", "/reconstruct", {"json": {"layers": 1}}, 422, "invalid-input", "image_b64"),
    ("n-zero", "POST", "/sample", {"json": {"n": 0}}, 422, "invalid-input", "greater than or equal to 1"),
    ("n-too-large", "POST", "/sample", {"json": {"n": 1000}}, 422, "invalid-input", "limit of 64"),
    ("n-not-int", "POST", "/sample", {"json": {"n": 1.5}}, 422, "invalid-input", "integer"),
    ("temperature-negative", "POST", "/sample", {"json": {"temperature": -1}}, 422, "invalid-input", ">= 0"),
    ("temperature-too-high", "POST", "/sample", {"json": {"temperature": 5}}, 422, "invalid-input",
     "out of range [0, 2]"),
    ("temperature-nan", "POST", "/sample", {"content": b'{"temperature": NaN}'}, 422, "invalid-input", "finite"),
    ("temperature-infinite", "POST", "/sample", {"content": b'{"temperature": Infinity}'}, 422, "invalid-input",
     "finite"),
    ("temperature-list-length", "POST", "/sample", {"json": {"temperature": [1.0, 1.0]}}, 422, "invalid-input",
     "latent layers"),
    ("temperature-list-nan", "POST", "/sample", {"content": b'{"temperature": [1.0, NaN]}'}, 422, "invalid-input",
     "finite"),
    ("temperature-string", "POST", "/sample", {"json": {"temperature": "hot"}}, 422, "invalid-input", "number"),
    ("guidance-nan", "POST", "/sample", {"content": b'{"label": 1, "guidance": {"mean": NaN}}'}, 422,
     "invalid-input", "finite"),
    ("guidance-without-label", "POST", "/sample", {"json": {"guidance": {"mean": 1}}}, 422, "invalid-input",
     "needs a label"),
    ("guidance-too-strong", "POST", "/sample", {"json": {"label": 1, "guidance": {"mean": 1e6}}}, 422,
     "invalid-input", "above the limit"),
    ("label-unconditional", "POST", "/sample", {"json": {"model": "tiny", "label": 1}}, 422, "invalid-input",
     "unconditional"),
    ("label-out-of-range", "POST", "/sample", {"json": {"label": 10}}, 422, "invalid-input", "classes 0..9"),
    ("label-negative", "POST", "/sample", {"json": {"label": -3}}, 422, "invalid-input", "greater than or equal"),
    ("seed-negative", "POST", "/sample", {"json": {"seed": -1}}, 422, "invalid-input", "seed"),
    ("seed-too-large", "POST", "/sample", {"json": {"seed": 2**63}}, 422, "invalid-input", "seed"),
    ("timeout-zero", "POST", "/sample", {"json": {"timeout_ms": 0}}, 422, "invalid-input", "timeout_ms"),
    ("unknown-field", "POST", "/sample", {"json": {"n": 1, "temprature": 0.5}}, 422, "invalid-input",
     "temprature"),
    ("unknown-model", "POST", "/sample", {"json": {"model": "nope"}}, 404, "model-not-found", "served models"),
    ("unknown-model-image", "POST", "/encode", {"json": {"model": "nope", "image_b64": PNG_B64}}, 404,
     "model-not-found", "served models"),
    ("malformed-json", "POST", "/sample", {"content": b'{"n": 1,'}, 400, "malformed-body", "not valid JSON"),
    ("malformed-json-image", "POST", "/encode", {"content": b'{"image_b64": '}, 400, "malformed-body",
     "not valid JSON"),
    ("json-array", "POST", "/sample", {"json": [1, 2]}, 400, "malformed-body", "JSON object"),
    ("json-array-image", "POST", "/encode", {"json": [1]}, 400, "malformed-body", "JSON object"),
    ("wrong-content-type", "POST", "/reconstruct", {"content": b"x", "headers": {"content-type": "text/plain"}},
     415, "unsupported-media-type", "multipart/form-data"),
    ("layers-too-deep", "POST", "/reconstruct", {"json": {"image_b64": PNG_B64, "layers": 10_000}}, 422,
     "invalid-input", "latent layers"),
    ("encode-latents-too-many", "POST", "/encode", {"json": {"image_b64": PNG_B64, "latents": 10_000}}, 422,
     "invalid-input", "latent layers"),
    ("decode-wrong-shape", "POST", "/decode", {"json": {"latents": [latent([8, 2, 2])]}}, 422, "invalid-input",
     "has shape"),
    ("decode-bad-base64", "POST", "/decode", {"json": {"latents": [{**latent([8, 1, 1]), "data": "@@"}]}}, 422,
     "invalid-input", "base64"),
    ("decode-short-data", "POST", "/decode", {"json": {"latents": [{**latent([8, 1, 1]), "data": "AAAA"}]}}, 422,
     "invalid-input", "bytes"),
    ("decode-nan-latent", "POST", "/decode", {"json": {"latents": [latent([8, 1, 1], float("nan"))]}}, 422,
     "invalid-input", "finite"),
    ("decode-layer-order", "POST", "/decode", {"json": {"latents": [latent([8, 1, 1], layer=1)]}}, 422,
     "invalid-input", "in order"),
    ("decode-no-latents", "POST", "/decode", {"json": {"latents": []}}, 422, "invalid-input", "at least 1"),
    ("decode-dtype", "POST", "/decode", {"json": {"latents": [{**latent([8, 1, 1]), "dtype": "float16"}]}}, 422,
     "invalid-input", "float32"),
    ("body-too-large", "POST", "/reconstruct", image_upload(b"x" * (600 * 1024)), 413, "body-too-large",
     "limit"),
    ("body-too-large-chunked", "POST", "/sample", {"content": chunks(600 * 1024)}, 413, "body-too-large",
     "limit"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "kind", "words"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_bad_input_gets_a_problem_and_the_service_keeps_serving(
    client: httpx.Client, method: str, path: str, kwargs: dict, status: int, kind: str, words: str
) -> None:
    if "content" in kwargs and "headers" not in kwargs:
        kwargs = {**kwargs, "headers": {"content-type": "application/json"}}
    r = client.request(method, path, **kwargs)
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
    from .conftest import metric_value

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
