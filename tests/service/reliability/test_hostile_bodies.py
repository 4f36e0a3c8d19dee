"""Bodies made to be expensive: deeply nested JSON, a PNG of a million tiny text chunks, a 15 MB
temperature list. Each gets its 4xx problem (with the request id, on a connection that stays
usable), and none holds up the event loop: /health/live keeps answering while they are parsed."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.bench.hostile import huge_temperature_list, million_chunk_png, nested_json

from ..conftest import RunningServer, digit_like, png_bytes, running_server


@pytest.fixture(scope="module")
def big_bodies(model_dir: Path) -> Iterator[RunningServer]:
    """The 16 MiB body limit alone (no endpoint limits), so the hostile bodies are read in full and
    meet the parsing caps, as they would for a model whose images are large."""
    with running_server(model_dir, endpoint_body_limits=False) as server:
        yield server


MILLION_CHUNKS = million_chunk_png(png_bytes(digit_like()))
HUGE_TEMPERATURES = huge_temperature_list()  # 15.6 MB
NESTED = nested_json()


def assert_problem(r: httpx.Response, statuses: tuple[int, ...]) -> None:
    assert r.status_code in statuses, r.text[:300]
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["request_id"] == r.headers["x-request-id"]


@pytest.mark.parametrize(
    ("path", "kwargs"),
    [
        (
            "/encode",
            {"content": b'{"label": ' + NESTED + b"}", "headers": {"content-type": "application/json"}},
        ),
        ("/reconstruct", {"content": b'{"temperature": ' + NESTED + b"}"}),
        ("/sample", {"content": b'{"n": 1, "label": ' + NESTED + b"}"}),
        (
            "/encode",
            {"files": {"image": ("x.png", png_bytes(digit_like()))}, "data": {"label": NESTED.decode()}},
        ),
        ("/encode", {"content": b'{"label": ' + b"[" * 40 + b"]" * 40 + b"}"}),  # just past max_json_depth
    ],
    ids=["json-encode", "json-reconstruct", "json-sample", "multipart-field", "depth-40"],
)
def test_nested_json_is_a_4xx_and_the_connection_stays_usable(
    client: httpx.Client, path: str, kwargs: dict
) -> None:
    r = client.post(path, **kwargs)
    assert_problem(r, (400, 413, 422))
    assert r.headers.get("connection") != "close"
    # The same keep-alive connection serves the next request.
    assert client.post("/sample", json={"n": 1, "seed": 0}).status_code == 200


def test_a_legitimate_body_deeper_than_its_bracket_count_suggests_passes(client: httpx.Client) -> None:
    """/decode of every latent layer has more brackets than max_json_depth but nests 4 deep."""
    enc = client.post("/encode", files={"image": ("x.png", png_bytes(digit_like()))}, data={"latents": "100"})
    if enc.status_code == 422:  # fewer layers than 100: ask for all of them
        layers = client.get("/v1/models/mnist").json()["num_layers"]
        enc = client.post(
            "/encode", files={"image": ("x.png", png_bytes(digit_like()))}, data={"latents": str(layers)}
        )
    assert enc.status_code == 200, enc.text
    latents = enc.json()["latents"]
    r = client.post("/decode", json={"latents": latents, "seed": 0})
    assert r.status_code == 200, r.text


def probe_while(server: RunningServer, send, workers: int = 2, rounds: int = 2) -> tuple[float, list]:
    """Loop `send` on `workers` threads while /health/live is probed; (worst probe latency, answers)."""
    answers: list = []
    done = threading.Event()

    def worker() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            for _ in range(rounds):
                answers.append(send(c))

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    worst = 0.0
    with httpx.Client(base_url=server.url, timeout=60) as probe:
        probe.get("/health/live")
        for t in threads:
            t.start()
        watcher = threading.Thread(target=lambda: ([t.join() for t in threads], done.set()))
        watcher.start()
        while not done.is_set():
            t0 = time.perf_counter()
            assert probe.get("/health/live").status_code == 200
            worst = max(worst, time.perf_counter() - t0)
            time.sleep(0.01)
    return worst, answers


# Generous: on a busy 2-core CI machine a probe may wait for a few GIL switches and an upload's
# socket reads. Before these bodies were parsed off the loop, one took 5.5 s (PNG) or 4.9 s (list).
PROBE_BOUND_S = 1.0


def test_a_million_chunk_png_is_refused_without_stalling_health(big_bodies: RunningServer) -> None:
    worst, answers = probe_while(
        big_bodies, lambda c: c.post("/encode", files={"image": ("x.png", MILLION_CHUNKS)}), workers=2
    )
    assert worst < PROBE_BOUND_S, f"/health/live took {worst:.2f} s"
    for r in answers:
        assert_problem(r, (422,))
        assert "metadata" in r.json()["detail"]


def test_a_huge_temperature_list_is_refused_without_stalling_health(big_bodies: RunningServer) -> None:
    worst, answers = probe_while(
        big_bodies,
        lambda c: c.post("/sample", content=HUGE_TEMPERATURES, headers={"content-type": "application/json"}),
    )
    assert worst < PROBE_BOUND_S, f"/health/live took {worst:.2f} s"
    for r in answers:
        assert_problem(r, (413, 422))


def test_a_large_valid_upload_is_parsed_off_the_loop_and_served(big_bodies: RunningServer) -> None:
    """A body past the inline size (a PNG with 2 MiB of trailing bytes) takes the parsing thread."""
    data = png_bytes(digit_like()) + b"\x00" * (2 * 2**20)
    with big_bodies.client() as c:
        r = c.post("/encode", json={"image_b64": base64.b64encode(data).decode(), "seed": 0})
        assert r.status_code == 200, r.text
        small = c.post("/encode", files={"image": ("x.png", png_bytes(digit_like()))}, data={"seed": "0"})
        assert small.json()["kl_bits"] == r.json()["kl_bits"]
