"""End to end: a full queue answers 503 at once, a missed deadline 504, a disconnected client is
dropped, and none of those requests is ever computed.

The server here never gets to compute a sample: its batch window (1.5 s, never closed early) is
longer than its request deadline (1 s) and its queue (4 images) can never fill a batch (64), so
every request waits in the queue until its deadline. vae_images_total staying at 0 proves that nothing that
expired, was rejected or was abandoned reached the model.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import RunningServer, metric_value, post_raw, running_server


@pytest.fixture(scope="module")
def stalled(model_dir: Path) -> Iterator[RunningServer]:
    with running_server(
        model_dir,
        max_batch_size=64,
        max_batch_delay_ms=1500,
        batch_early_close=False,
        request_timeout_s=1.0,
        max_queue_images=4,
        max_images_per_request=4,
    ) as server:
        yield server


def sampled_images(server: RunningServer) -> float:
    return metric_value(server.metrics(), "vae_images_total", operation="sample")


def failures(server: RunningServer, reason: str) -> float:
    return metric_value(server.metrics(), "vae_request_failures_total", reason=reason)


def wait_for(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_full_queue_answers_503_with_retry_after(stalled: RunningServer) -> None:
    async def scenario() -> tuple[httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(base_url=stalled.url, timeout=30) as client:
            filling = asyncio.create_task(client.post("/sample", json={"n": 4}))
            while (
                metric_value((await client.get("/metrics")).text, "vae_queue_depth", operation="sample") < 4
            ):
                await asyncio.sleep(0.02)
            rejected = await client.post("/sample", json={"n": 1})
            return rejected, await filling

    rejected, filling = asyncio.run(scenario())
    assert rejected.status_code == 503
    assert rejected.headers["content-type"] == "application/problem+json"
    assert rejected.json()["type"] == "/problems/queue-full"
    assert int(rejected.headers["retry-after"]) >= 1
    assert "4" in rejected.json()["detail"]
    assert filling.status_code == 504  # it waited for a batch until its deadline
    assert sampled_images(stalled) == 0
    # The queue is free again: a new request is queued (and times out) rather than rejected.
    assert httpx.post(stalled.url + "/sample", json={"n": 4, "timeout_ms": 100}).status_code == 504


def test_missed_deadline_is_504_and_never_computed(stalled: RunningServer) -> None:
    before = failures(stalled, "deadline")
    t0 = time.monotonic()
    r = httpx.post(stalled.url + "/sample", json={"n": 1, "timeout_ms": 200}, timeout=30)
    elapsed = time.monotonic() - t0
    assert r.status_code == 504
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == "/problems/deadline-exceeded"
    assert 0.2 <= elapsed < 1.0  # answered at its own deadline, not at the server's (1 s)
    # A client cannot extend the server's deadline.
    t0 = time.monotonic()
    r = httpx.post(stalled.url + "/sample", json={"n": 1, "timeout_ms": 600_000}, timeout=30)
    assert r.status_code == 504 and 1.0 <= time.monotonic() - t0 < 1.5
    time.sleep(0.8)  # past the batch window: the batch formed without them
    assert failures(stalled, "deadline") - before == 2
    assert sampled_images(stalled) == 0


def test_disconnected_client_is_dropped_before_compute(stalled: RunningServer) -> None:
    cancelled, deadline = failures(stalled, "cancelled"), failures(stalled, "deadline")
    body = b'{"n": 1}'
    with socket.create_connection(("127.0.0.1", stalled.port)) as sock:
        post_raw(sock, "/sample", body)
        wait_for(lambda: metric_value(stalled.metrics(), "vae_queue_depth", operation="sample") == 1)
    # Seen as cancelled well before its 1 s deadline, and never computed.
    wait_for(lambda: failures(stalled, "cancelled") == cancelled + 1, timeout_s=0.9)
    time.sleep(1.6)
    assert failures(stalled, "deadline") == deadline
    assert sampled_images(stalled) == 0
    assert metric_value(stalled.metrics(), "vae_queue_depth", operation="sample") == 0
