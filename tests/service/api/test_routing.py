"""The model routes' direct dispatch (service.api.routing.DirectDispatch) answers exactly as the
app's normal path does: the same requests, good and bad, against two real servers, one with the
dispatch and one without it (direct_dispatch off), give the same statuses, headers, bodies and
metrics."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service import Settings
from service.api.routing import DirectDispatch, direct_routes

from ..conftest import TEST_SETTINGS, RunningServer, digit_like, metric_value, png_bytes

SETTINGS = dict(TEST_SETTINGS, max_batch_size=16, max_batch_delay_ms=30, warmup=False)


@pytest.fixture(scope="module")
def servers(model_dir: Path) -> Iterator[tuple[RunningServer, RunningServer]]:
    """(with the dispatch, without it): the same settings and models."""
    direct = RunningServer(Settings(model_dir=model_dir, **SETTINGS))
    normal = RunningServer(Settings(model_dir=model_dir, direct_dispatch=False, **SETTINGS))
    assert [m.cls for m in direct.app.user_middleware].count(DirectDispatch) == 1
    assert DirectDispatch not in [m.cls for m in normal.app.user_middleware]
    direct.start()
    normal.start()
    try:
        yield direct, normal
    finally:
        direct.stop()
        normal.stop()


def image_b64() -> str:
    return base64.b64encode(png_bytes(digit_like())).decode()


JSON = {"Content-Type": "application/json"}
REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("sample", "/sample", {"json": {"seed": 3, "n": 2}}),
    ("sample png", "/sample", {"json": {"seed": 3, "n": 4}, "headers": {"Accept": "image/png"}}),
    ("sample with a request id", "/sample", {"json": {"seed": 5}, "headers": {"X-Request-ID": "abc-1"}}),
    ("not JSON", "/sample", {"content": b"{not json", "headers": JSON}),
    ("JSON not an object", "/sample", {"content": b"[1, 2]", "headers": JSON}),
    ("n out of range", "/sample", {"json": {"n": 0}}),
    ("unknown field", "/sample", {"json": {"seed": 1, "colour": "red"}}),
    ("unknown model", "/sample", {"json": {"model": "nope"}}),
    ("wrong media type", "/sample", {"content": b"seed=1", "headers": {"Content-Type": "text/plain"}}),
    ("reconstruct", "/reconstruct", {"json": {"image_b64": image_b64(), "seed": 2}}),
    (
        "reconstruct form",
        "/reconstruct",
        {"files": {"image": ("d.png", png_bytes(digit_like()))}, "data": {"seed": "6"}},
    ),
    ("reconstruct not an image", "/reconstruct", {"json": {"image_b64": "aGVsbG8="}}),
    ("encode", "/encode", {"json": {"image_b64": image_b64(), "seed": 7}}),
    ("decode", "/decode", {"json": {"seed": 4, "temperature": 0.5}}),
    ("interpolate", "/interpolate", {"json": {"seeds": [1, 2], "steps": 3}}),
    ("upscale on a plain model", "/upscale", {"json": {"image_b64": image_b64()}}),
    ("GET on a POST route", "/sample", {"method": "GET"}),
    ("trailing slash", "/sample/", {"json": {"seed": 1}}),
]


def comparable(response: httpx.Response) -> tuple[int, str, Any, dict[str, str]]:
    """Status, media type, body (JSON without its timestamp and per-request ids) and our headers."""
    media = response.headers.get("content-type", "")
    body: Any = response.content
    if "json" in media:
        body = json.loads(response.content)
        if isinstance(body, dict):
            for key in ("created", "request_id"):
                body.pop(key, None)
    ours = {k: v for k, v in response.headers.items() if k.startswith("x-") and k != "x-request-id"}
    return response.status_code, media, body, ours


@pytest.mark.parametrize("name,path,kwargs", REQUESTS, ids=[r[0] for r in REQUESTS])
def test_direct_dispatch_answers_as_the_app_does(servers, name: str, path: str, kwargs: dict) -> None:
    kwargs = dict(kwargs)
    method = kwargs.pop("method", "POST")
    answers = []
    for server in servers:
        with server.client(follow_redirects=False) as client:
            r = client.request(method, path, **kwargs)
        assert r.headers.get("x-request-id"), name
        answers.append(comparable(r))
    assert answers[0] == answers[1]
    given = kwargs.get("headers", {}).get("X-Request-ID")
    if given:
        assert r.headers["x-request-id"] == given


def test_the_same_requests_are_counted_alike(servers) -> None:
    """Each answer's metrics: by the route's template, its status, and the failure's reason."""
    before = [server.metrics() for server in servers]
    for server in servers:
        with server.client() as client:
            client.post("/sample", json={"seed": 1})
            client.post("/sample", json={"n": 0})
            client.post("/encode", content=b"{", headers=JSON)
    after = [server.metrics() for server in servers]
    counted = []
    for b, a in zip(before, after):
        counts = {}
        for endpoint, code in (("/sample", "200"), ("/sample", "422"), ("/encode", "400")):
            counts[endpoint, code] = metric_value(a, "vae_requests_total", endpoint=endpoint, code=code) - (
                metric_value(b, "vae_requests_total", endpoint=endpoint, code=code)
            )
        counts["invalid"] = metric_value(a, "vae_request_failures_total", reason="invalid") - metric_value(
            b, "vae_request_failures_total", reason="invalid"
        )
        counted.append(counts)
    assert counted[0] == counted[1]
    assert counted[0][("/sample", "200")] == 1 and counted[0][("/encode", "400")] == 1


def test_every_model_endpoint_is_dispatched_directly(servers) -> None:
    direct, _ = servers
    assert set(direct_routes(direct.app.routes)) == {
        "/sample",
        "/sample/stream",
        "/reconstruct",
        "/encode",
        "/decode",
        "/interpolate",
        "/upscale",
    }
