"""End to end: concurrent requests share model passes, and an image depends only on its own request."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from .conftest import RunningServer, metric_value, run_async, running_server


async def post_all(url: str, bodies: list[dict]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        return await asyncio.gather(*(client.post("/sample", json=b) for b in bodies))


def batch_counts(server: RunningServer) -> tuple[float, float]:
    """(model passes, images in them) of mnist/sample so far."""
    text = server.metrics()
    labels = {"model": "mnist", "operation": "sample"}
    return metric_value(text, "vae_batch_size_count", **labels), metric_value(
        text, "vae_batch_size_sum", **labels
    )


def test_concurrent_requests_form_batches_larger_than_one(server: RunningServer) -> None:
    passes0, images0 = batch_counts(server)
    responses = run_async(post_all(server.url, [{"n": 1, "seed": i} for i in range(12)]))
    assert [r.status_code for r in responses] == [200] * 12
    passes, images = batch_counts(server)
    assert images - images0 == 12
    assert passes - passes0 < 12, "12 concurrent requests ran in 12 passes: nothing was batched"
    text = server.metrics()
    # The batch-size histogram saw a batch above 1 image.
    above_one = metric_value(text, "vae_batch_size_count", model="mnist", operation="sample") - metric_value(
        text, "vae_batch_size_bucket", model="mnist", operation="sample", le="1.0"
    )
    assert above_one >= 1


def test_a_lone_client_does_not_wait_for_the_batch_window(model_dir: Path) -> None:
    with running_server(model_dir, max_batch_delay_ms=3000) as server, server.client() as c:
        for seed in range(3):
            t0 = time.monotonic()
            assert c.post("/sample", json={"n": 1, "seed": seed}).status_code == 200
            assert time.monotonic() - t0 < 1.5, "a lone request waited for the 3 s batch window"


def test_same_seed_gives_the_same_image_whatever_else_is_in_flight(server: RunningServer) -> None:
    reference = {"n": 1, "seed": 1234, "label": 3, "temperature": 0.8}
    with server.client() as c:
        alone = c.post("/sample", json=reference).json()["data"][0]
        guided_alone = c.post(
            "/sample", json={**reference, "guidance": {"mean": 1.5, "variance": 0.5}}
        ).json()
    others = [
        {"n": 3, "seed": 7},
        {"n": 1, "seed": 99, "label": 1, "guidance": {"mean": 3.0, "variance": 1.0}},
        {"n": 2, "seed": 1234, "temperature": 0.5},  # same seed, other parameters
        {"n": 1, "seed": 5, "label": 9, "temperature": 1.2},
        {"n": 4, "seed": 1230, "label": 3},  # covers seed 1234 at another temperature
    ]
    passes0, images0 = batch_counts(server)
    bodies = [others[0], reference, others[1], {**reference, "guidance": {"mean": 1.5, "variance": 0.5}}]
    bodies += [*others[2:], reference]
    responses = run_async(post_all(server.url, bodies))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
    passes, images = batch_counts(server)
    assert passes - passes0 < images - images0, "the mixed requests never shared a pass"

    for i, body in enumerate(bodies):
        if body == reference:
            assert responses[i].json()["data"][0] == alone
    guided = responses[3].json()["data"][0]
    assert guided == guided_alone["data"][0]
    assert guided["b64_json"] != alone["b64_json"]
