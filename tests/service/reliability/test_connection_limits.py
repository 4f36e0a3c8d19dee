"""Connection-level limits, end to end on a real server: huge headers (431), slowloris heads and slow
uploads (408, closed), silent connections (closed), too many connections (503), too many body bytes
at once (503 + Retry-After), bytes that are not HTTP (a problem, not plain text). Every wait here is
bounded: against a server without these limits each test fails at its bound instead of hanging."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..conftest import RunningServer, metric_value, running_server
from .wire import connect, parse, read_until_closed, readable, send_slowly

# One second for every connection timeout: the tests wait a few seconds at most.
LIMITS = dict(
    header_timeout_s=1.0,
    body_timeout_s=1.0,
    keepalive_timeout_s=1.0,
    max_body_bytes=2**20,
    max_body_bytes_in_flight=2 * 2**20,
    warmup=False,
)


@pytest.fixture(scope="module")
def limited(model_dir: Path) -> Iterator[RunningServer]:
    with running_server(model_dir, **LIMITS) as server:
        yield server


def head(path: str = "/health/live", method: str = "GET", **headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: test", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_a_64_mib_header_gets_431_after_reading_a_few_kib(limited: RunningServer) -> None:
    sock = connect(limited.port)
    sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: test\r\nX-Big: ")
    sent, chunk = 0, b"a" * 65536
    while sent < 64 * 2**20 and not readable(sock):
        try:
            sock.sendall(chunk)
        except OSError:
            break
        sent += len(chunk)
    if sent >= 64 * 2**20:  # never stopped: finish the request, as a server without a limit expects
        sock.sendall(b"\r\n\r\n")
    response = parse(read_until_closed(sock, timeout_s=10))
    assert response is not None and response.status == 431, response
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "/problems/headers-too-large" and response.json()["request_id"]
    assert sent < 16 * 2**20  # refused early (what was sent meanwhile sat in socket buffers), not at 64 MiB
    assert httpx.get(limited.url + "/health/live").status_code == 200


def test_slowloris_heads_get_408_and_are_closed(limited: RunningServer) -> None:
    socks = [connect(limited.port) for _ in range(10)]
    for sock in socks:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: test\r\n")
    deadline = time.monotonic() + 6
    answered = [False] * len(socks)
    while not all(answered) and time.monotonic() < deadline:  # one more header line every 0.2 s
        for i, sock in enumerate(socks):
            if not answered[i]:
                answered[i] = send_slowly(sock, b"X", 0.0, deadline) or readable(sock)
        time.sleep(0.2)
    for sock in socks:
        response = parse(read_until_closed(sock, timeout_s=3))
        assert response is not None and response.status == 408, response
        assert response.json()["type"] == "/problems/request-timeout"
        assert "headers" in response.json()["detail"]


def test_a_silent_connection_is_closed(limited: RunningServer) -> None:
    sock = connect(limited.port)
    start = time.monotonic()
    assert read_until_closed(sock, timeout_s=5) == b""
    assert time.monotonic() - start < 4  # closed after keepalive_timeout_s (1 s), not at our bound


def test_a_slow_upload_gets_408_and_leaves_nothing_in_flight(limited: RunningServer) -> None:
    def upload() -> httpx.Response | None:
        sock = connect(limited.port)
        sock.sendall(
            head("/encode", "POST", **{"Content-Type": "application/json", "Content-Length": "1000"})
        )
        send_slowly(sock, b"{" + b" " * 999, every_s=0.1, until=time.monotonic() + 6)
        return parse(read_until_closed(sock, timeout_s=3))

    results: list = []
    threads = [threading.Thread(target=lambda: results.append(upload())) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=15)
    assert len(results) == 5
    for response in results:
        assert response is not None and response.status == 408, response
        assert response.json()["type"] == "/problems/request-timeout"
        assert response.headers["connection"] == "close"
    assert metric_value(limited.metrics(), "vae_inflight_requests") == 0


def test_body_bytes_in_flight_are_bounded(limited: RunningServer) -> None:
    # Two uploads that declare 1 MiB each and send it slowly hold the whole 2 MiB budget.
    holders = [connect(limited.port) for _ in range(2)]
    for sock in holders:
        sock.sendall(
            head("/encode", "POST", **{"Content-Type": "application/json", "Content-Length": str(2**20)})
        )
        sock.sendall(b"{")
    time.sleep(0.3)
    r = httpx.post(limited.url + "/encode", content=b"{" + b" " * (2**20 - 2) + b"}")
    assert r.status_code == 503, r.text
    assert r.json()["type"] == "/problems/body-budget-full" and r.headers["retry-after"]
    small = httpx.post(limited.url + "/encode", json={"latents": 0})  # small bodies are not locked out
    assert small.status_code == 422, small.text
    for sock in holders:
        sock.close()
    deadline = time.monotonic() + 5
    while (r := httpx.post(limited.url + "/encode", content=b'{"latents": 0}')).status_code == 503:
        assert time.monotonic() < deadline, "the budget was not given back"
        time.sleep(0.1)
    assert r.status_code == 422  # read and validated: no image


def test_bytes_that_are_not_http_get_a_problem(limited: RunningServer) -> None:
    sock = connect(limited.port)
    sock.sendall(b"\x16\x03\x01 this is not HTTP\r\n\r\n")
    response = parse(read_until_closed(sock, timeout_s=5))
    assert response is not None and response.status == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "/problems/malformed-request"


def test_connections_beyond_the_limit_get_503_and_are_closed(model_dir: Path) -> None:
    with running_server(model_dir, max_connections=3, warmup=False) as server:
        held = [connect(server.port) for _ in range(3)]
        time.sleep(0.2)
        with httpx.Client(base_url=server.url, timeout=10) as client:
            r = client.get("/health/live")
        assert r.status_code == 503 and r.headers["connection"] == "close"
        assert r.json()["type"] == "/problems/too-many-connections" and r.headers["retry-after"]
        for sock in held:
            sock.close()
        deadline = time.monotonic() + 5
        while httpx.get(server.url + "/health/live").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
