"""The Python client against a real service on loopback (and, for exact retry timing, against a real
loopback HTTP server that answers 503 first): typed results that match the raw API byte for byte,
503s retried to success after Retry-After, 4xx raised with the problem's detail, the deadline sent
as timeout_ms, the API key sent as a bearer token, and no torch import."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from service.client import (
    APIError,
    AsyncClient,
    Client,
    ConnectionFailed,
    Images,
    RetryPolicy,
)

from ..conftest import REPO, RunningServer, digit_like, keyed_server, metric_value, png_bytes, running_server

SAMPLE = {"n": 4, "label": 3, "guidance": {"mean": 1.0, "variance": 0.5}, "temperature": 0.8, "seed": 11}


def test_sample_gives_the_services_images_seeds_and_arrays(server: RunningServer) -> None:
    with Client(server.url) as client:
        out = client.sample(4, label=3, guidance=(1.0, 0.5), temperature=0.8, seed=11)
    with server.client() as raw:
        body = raw.post("/sample", json=SAMPLE).json()
        grid = raw.post("/sample", json=SAMPLE, headers={"accept": "image/png"}).content
    assert isinstance(out, Images) and out.model == "mnist" and len(out) == 4
    assert out.seeds == [11, 12, 13, 14]
    assert [im.png for im in out] == [base64.b64decode(d["b64_json"]) for d in body["data"]]
    arrays = out.arrays()
    assert arrays.shape == (4, 32, 32, 1) and arrays.dtype == np.uint8
    assert out[0].pil().size == (32, 32)
    assert out.grid_png() == grid  # the bytes of the service's own grid


def test_reconstruct_encode_and_decode_round_trip(server: RunningServer) -> None:
    digit = digit_like()
    with Client(server.url) as client:
        info = client.model("mnist")
        rec = client.reconstruct(digit, layers=3, seed=0, label=0)
        enc = client.encode(png_bytes(digit), latents=2, seed=0, label=0)
        dec = client.decode(enc, seed=5, label=0)
        dec_from_arrays = client.decode(list(enc.latents), seed=5, label=0)
    assert rec.layers == 3 and rec.bits > 0 and rec.image.array().shape == (32, 32, 1)
    assert enc.kl_bits.shape == (info.num_layers,) and enc.dims == 32 * 32
    assert enc.elbo_bits_per_dim == pytest.approx(enc.rate_bits_per_dim + enc.distortion_bits_per_dim)
    assert [list(z.shape) for z in enc.latents] == info.latent_shapes[:2]
    assert all(z.dtype == np.float32 for z in enc.latents)
    assert dec.seeds == [5] and dec[0].png == dec_from_arrays[0].png
    with server.client() as raw:  # the same request by hand gives the same image
        z = [
            {"layer": i, "shape": list(t.shape), "data": base64.b64encode(t.astype("<f4").tobytes()).decode()}
            for i, t in enumerate(enc.latents)
        ]
        body = raw.post("/decode", json={"latents": z, "seed": 5, "label": 0}).json()
    assert base64.b64decode(body["data"][0]["b64_json"]) == dec[0].png
    assert info.limits["max_batch_size"] == 16 and info.default


def test_interpolate_between_seeds_and_images_and_the_unconditional_prior(server: RunningServer) -> None:
    digit = digit_like()
    with Client(server.url) as client:
        path = client.interpolate(21, 22, 5, label=4, seed=0)
        from_image = client.interpolate(digit, 7, 3, seed=0)
        default = client.interpolate(23, 24, 3)
        prior = client.interpolate(23, 24, 3, label=None)
        alone = client.sample(1, seed=23)
    with server.client() as raw:
        body = raw.post(
            "/interpolate", json={"start": 21, "end": 22, "steps": 5, "label": 4, "seed": 0}
        ).json()
        row = raw.post(
            "/interpolate",
            json={"start": 21, "end": 22, "steps": 5, "label": 4, "seed": 0},
            headers={"accept": "image/png"},
        ).content
        multipart = raw.post(
            "/interpolate",
            files={"start": ("d.png", png_bytes(digit), "image/png")},
            data={"end": "7", "steps": "3", "seed": "0"},
        ).json()
    assert [im.png for im in path] == [base64.b64decode(d["b64_json"]) for d in body["data"]]
    assert path.t == (0.0, 0.25, 0.5, 0.75, 1.0) and path.label == 4 and path.seed == 0
    assert path.grid_png() == row  # one row, as the service sends it
    assert [im.png for im in from_image] == [base64.b64decode(d["b64_json"]) for d in multipart["data"]]
    assert from_image.label is None  # an image start has no seed's label
    assert default.label == 3 and default[0].png == alone[0].png  # the seed rule: 23 -> 3
    assert prior.label is None and prior[0].png != alone[0].png


def test_label_none_is_sent_as_the_unconditional_prior(server: RunningServer) -> None:
    with Client(server.url) as client:
        unconditional = client.sample(2, seed=5, label=None, temperature=0.8)
        default = client.sample(2, seed=5)
        sampling = client.model("mnist").sampling
    with server.client() as raw:
        body = raw.post("/sample", json={"n": 2, "seed": 5, "label": None, "temperature": 0.8}).json()
    assert unconditional.labels == [None, None] and default.labels == [5, 6]
    assert [im.png for im in unconditional] == [base64.b64decode(d["b64_json"]) for d in body["data"]]
    assert sampling["label"] == "seed"  # what the model's defaults say, as ModelInfo.sampling


def test_async_client_gives_the_same_results_concurrently(server: RunningServer) -> None:
    async def three() -> list[Images]:
        async with AsyncClient(server.url) as client:
            return await asyncio.gather(*(client.sample(2, seed=s, label=1) for s in (1, 3, 5)))

    results = asyncio.run(three())
    with Client(server.url) as client:
        together = client.sample(6, seed=1, label=1)
    assert [im.png for r in results for im in r] == [im.png for im in together]


def test_a_4xx_is_raised_with_the_problems_status_title_and_detail(server: RunningServer) -> None:
    with Client(server.url) as client:
        with pytest.raises(APIError) as bad_label:
            client.sample(2, label=99)
        with pytest.raises(APIError) as unknown:
            client.sample(1, model="nope")
    e = bad_label.value
    assert (e.status, e.title, e.bad_input) == (422, "Invalid input", True)
    assert "label 99 is out of range" in e.detail and str(e) == e.detail
    assert e.errors[0]["loc"] == ["body", "label"] and e.type == "/problems/invalid-input"
    assert unknown.value.status == 404 and "served models: mnist, tiny" in unknown.value.detail


def test_a_full_queue_is_retried_until_every_request_is_served(model_dir: Path) -> None:
    # One image per pass and room for one request of two in the queue: concurrent requests of two
    # images find the queue full (503, Retry-After 1 s) until the ones ahead are done.
    with running_server(
        model_dir, max_batch_size=1, max_queue_images=2, max_images_per_request=2, max_batch_delay_ms=0
    ) as srv:

        async def six() -> list[Images]:
            async with AsyncClient(srv.url, retry=RetryPolicy(retries=30)) as client:
                return await asyncio.gather(*(client.sample(2, seed=2 * i, label=4) for i in range(6)))

        results = asyncio.run(six())
        refused = metric_value(srv.metrics(), "vae_request_failures_total", reason="queue_full")
    assert refused > 0  # the service did answer 503s, and the client retried them
    assert [r.seeds for r in results] == [[2 * i, 2 * i + 1] for i in range(6)]


@pytest.fixture(scope="module")
def never_computes(model_dir: Path) -> Iterator[RunningServer]:
    """A service whose batch window (60 s, never closed early) outlasts its own deadline (30 s): a
    request ends at its deadline, never computed."""
    with running_server(
        model_dir,
        max_batch_size=64,
        max_batch_delay_ms=60_000,
        batch_early_close=False,
        request_timeout_s=30.0,
        max_queue_images=4,
        max_images_per_request=4,
    ) as srv:
        yield srv


def test_the_per_call_timeout_is_the_services_deadline(never_computes: RunningServer) -> None:
    # Had the timeout not been sent, the service would hold the request for its own 30 s and the
    # client's read timeout (the call's 0.5 s + 2 s of grace) would end the call as ConnectionFailed.
    with Client(never_computes.url) as client, pytest.raises(APIError) as late:
        client.sample(1, seed=0, timeout=0.5)
    e = late.value
    assert (e.status, e.title, e.type, e.bad_input) == (
        504,
        "Deadline exceeded",
        "/problems/deadline-exceeded",
        False,
    )
    assert metric_value(never_computes.metrics(), "vae_images_total", operation="sample") == 0


def test_the_cli_exits_1_with_the_sentence_when_the_service_fails(tmp_path, never_computes) -> None:
    from ..cli.test_cli import vdvae

    late = vdvae(
        "sample", "--timeout", "0.5", "-o", "x.png", cwd=tmp_path, url=never_computes.url, check=False
    )
    assert late.returncode == 1 and "Traceback" not in late.stderr
    assert late.stderr.startswith("vdvae sample: error: ") and "deadline" in late.stderr
    assert not (tmp_path / "x.png").exists()


# --------------------------------------------------------------------------------------------
# A loopback server that answers 503 (Retry-After) before it answers 200
# --------------------------------------------------------------------------------------------


class Scripted(ThreadingHTTPServer):
    """Answers each POST with the next (status, headers, body) of its script; records requests."""

    def __init__(self, script: list[tuple[int, dict[str, str], dict]]) -> None:
        self.script, self.seen = list(script), []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(handler) -> None:
                body = handler.rfile.read(int(handler.headers["content-length"]))
                headers = {k.lower(): v for k, v in handler.headers.items()}
                self.seen.append((time.monotonic(), headers, json.loads(body)))
                status, headers, answer = self.script.pop(0)
                data = json.dumps(answer).encode()
                handler.send_response(status)
                for k, v in {"content-type": "application/json", **headers}.items():
                    handler.send_header(k, v)
                handler.send_header("content-length", str(len(data)))
                handler.end_headers()
                handler.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture()
def scripted() -> Iterator[Callable[[list], Scripted]]:
    servers = []

    def start(script: list[tuple[int, dict[str, str], dict]]) -> Scripted:
        s = Scripted(script)
        threading.Thread(target=s.serve_forever, daemon=True).start()
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


BUSY = (503, {"retry-after": "1"}, {"status": 503, "title": "Queue full", "detail": "the queue is full"})
PNG = base64.b64encode(png_bytes(digit_like())).decode()
DONE = (200, {}, {"created": 0, "model": "m", "data": [{"b64_json": PNG, "seed": 7, "label": 2}]})


def test_retry_after_is_honoured_and_the_deadline_shrinks(scripted) -> None:
    srv = scripted([BUSY, DONE])
    with Client(srv.url, api_key="secret") as client:
        out = client.sample(1, seed=7, timeout=30)
    (t0, headers, first), (t1, _, second) = srv.seen
    assert out.seeds == [7] and out.labels == [2] and out[0].array().shape == (32, 32, 1)
    assert t1 - t0 >= 1.0  # waited Retry-After, not just the 0.25 s backoff
    assert headers["authorization"] == "Bearer secret"
    assert first == {"n": 1, "seed": 7, "timeout_ms": first["timeout_ms"]}  # nothing the caller left out
    assert 28_000 < first["timeout_ms"] <= 30_000 and second["timeout_ms"] <= first["timeout_ms"] - 1000


def test_async_client_honours_retry_after_too(scripted, monkeypatch) -> None:
    monkeypatch.setenv("VDVAE_API_KEY", "from-env")
    srv = scripted([BUSY, BUSY, DONE])

    async def call() -> Images:
        async with AsyncClient(srv.url) as client:
            return await client.sample(1, seed=7)

    out = asyncio.run(call())
    assert out.seeds == [7] and len(srv.seen) == 3
    assert srv.seen[2][0] - srv.seen[0][0] >= 2.0
    assert srv.seen[0][1]["authorization"] == "Bearer from-env" and "timeout_ms" not in srv.seen[0][2]


def test_a_503_that_would_outlast_the_deadline_is_raised_at_once(scripted) -> None:
    srv = scripted([(503, {"retry-after": "10"}, BUSY[2])])
    t0 = time.monotonic()
    with Client(srv.url) as client, pytest.raises(APIError) as busy:
        client.sample(1, timeout=3)
    assert time.monotonic() - t0 < 2 and busy.value.status == 503 and not busy.value.bad_input
    assert busy.value.detail == "the queue is full"


LIMITED = (
    429,
    {"retry-after": "1"},
    {"status": 429, "title": "Rate limit", "detail": "this caller may have 2 images a second computed"},
)


def test_a_429_is_retried_after_its_retry_after_like_a_503_and_priority_is_sent(scripted) -> None:
    srv = scripted([LIMITED, DONE])
    with Client(srv.url, priority="low") as client:
        out = client.sample(1, seed=7)
    (t0, headers, _), (t1, again, _) = srv.seen
    assert out.seeds == [7] and t1 - t0 >= 1.0  # waited the bucket's Retry-After
    assert headers["x-priority"] == "low" and again["x-priority"] == "low"


def test_a_429_left_after_the_retries_is_not_bad_input(scripted) -> None:
    srv = scripted([LIMITED, LIMITED])
    with (
        Client(srv.url, retry=RetryPolicy(retries=1, backoff_s=0.01)) as client,
        pytest.raises(APIError) as e,
    ):
        client.sample(1)
    assert e.value.status == 429 and not e.value.bad_input and len(srv.seen) == 2


def test_the_cli_sends_its_priority_and_exits_1_on_a_429_it_cannot_wait_for(model_dir, tmp_path) -> None:
    from ..cli.test_cli import vdvae

    key = "cli-key-0123456789abcdef"
    keys = f"{key} rate=0.01 burst=2\n"  # two images, then one every 100 s
    with keyed_server(model_dir, tmp_path, keys, max_images_per_request=2) as srv:

        def sample(*flags: str) -> subprocess.CompletedProcess:
            args = ("sample", "-n", "2", "--api-key", key, "--timeout", "3", "-o", "x.png", *flags)
            return vdvae(*args, cwd=tmp_path, url=srv.url, check=False)

        high = sample("--priority", "high")  # sent, and more than this key may ask for
        low = sample("--priority", "low")
        limited = sample("--priority", "low")  # its Retry-After outlasts the command's deadline
    assert high.returncode == 2 and "X-Priority: high is not allowed" in high.stderr
    assert low.returncode == 0, low.stderr
    assert limited.returncode == 1 and "Traceback" not in limited.stderr  # try later, not bad input
    assert limited.stderr.startswith("vdvae sample: error: ") and "a second" in limited.stderr


def test_no_service_is_a_connection_failure() -> None:
    with (
        Client("http://127.0.0.1:9", retry=RetryPolicy(connect_retries=0)) as client,
        pytest.raises(ConnectionFailed, match=r"no answer from http://127\.0\.0\.1:9"),
    ):
        client.models()


def test_the_client_does_not_import_torch() -> None:
    code = "import sys, service.client, service.cli.commands; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
