"""End to end: POST /sample/stream sends a preview per resolution, then /sample's own images; streams
share passes; a client that leaves stops the work, and a missed deadline is an error event."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import httpx

from ..conftest import RunningServer, metric_value, post_raw, run_async

BODY = {"n": 3, "seed": 40, "label": 6, "temperature": 0.9, "guidance": {"mean": 1.0, "variance": 0.5}}


def parse_events(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def stream(client: httpx.Client, body: dict) -> tuple[httpx.Response, list[tuple[str, dict]]]:
    r = client.post("/sample/stream", json=body)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    return r, parse_events(r.text)


def test_previews_by_resolution_then_the_images_of_sample(client: httpx.Client) -> None:
    r, events = stream(client, BODY)
    info = client.get("/v1/models/mnist").json()
    resolutions = [s[1] for s in info["latent_shapes"]]
    stops = [
        (res, i + 1)
        for i, res in enumerate(resolutions)
        if i + 1 == len(resolutions) or resolutions[i + 1] != res
    ]
    assert [e for e, _ in events] == ["preview"] * (len(stops) - 1) + ["final"]
    assert [(d["resolution"], d["layers"]) for _, d in events] == stops
    assert [d["stage"] for _, d in events] == list(range(len(stops)))
    assert all(d["stages"] == len(stops) and d["num_layers"] == info["num_layers"] for _, d in events)
    assert r.headers["x-seeds"] == "40,41,42"
    assert all([i["seed"] for i in d["data"]] == [40, 41, 42] for _, d in events)
    final = events[-1][1]
    assert final["model"] == "mnist" and final["created"] > 0
    sampled = client.post("/sample", json=BODY).json()["data"]
    assert final["data"] == sampled  # the same images, seeds and labels
    assert all(
        d["data"] == [{**i, "b64_json": d["data"][k]["b64_json"]} for k, i in enumerate(sampled)]
        for _, d in events
    )  # every preview names each image's seed and label, as /sample does
    # The first preview is not yet the image: the layers below the top are at their prior mean.
    assert events[0][1]["data"][0]["b64_json"] != final["data"][0]["b64_json"]


def test_a_stream_larger_than_a_batch_is_whole_and_ordered(
    server: RunningServer, client: httpx.Client
) -> None:
    n = server.app.state.service.settings.max_batch_size + 3  # split over two passes
    _, events = stream(client, {"n": n, "seed": 7})
    assert [d["stage"] for _, d in events] == list(range(len(events)))
    assert all(len(d["data"]) == n for _, d in events)
    last = client.post("/sample", json={"n": 1, "seed": 7 + n - 1}).json()["data"][0]
    assert events[-1][1]["data"][-1] == last
    # Left out, each image's label is the model's rule on its own seed, named in every event.
    assert all([i["label"] for i in d["data"]] == [(7 + k) % 10 for k in range(n)] for _, d in events)


def test_concurrent_streams_share_passes(server: RunningServer) -> None:
    def passes() -> float:
        return metric_value(
            server.metrics(), "vae_batch_size_count", model="mnist", operation="sample_stream"
        )

    async def four() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as c:
            return await asyncio.gather(
                *(c.post("/sample/stream", json={"n": 1, "seed": s}) for s in range(4))
            )

    before = passes()
    responses = run_async(four())
    assert [parse_events(r.text)[-1][0] for r in responses] == ["final"] * 4
    assert passes() - before < 4, "4 concurrent streams ran in 4 passes: nothing was batched"


# A server whose model "tiny" is slow (conftest: slow)
# --------------------------------------------------------------------------------------------


def counts(server: RunningServer) -> dict[str, float]:
    text = server.metrics()
    return {
        "sent": metric_value(text, "vae_stream_stages_total", model="tiny", outcome="sent"),
        "dropped": metric_value(text, "vae_stream_stages_total", model="tiny", outcome="dropped"),
        "images": metric_value(text, "vae_images_total", model="tiny", operation="sample_stream"),
        "cancelled": metric_value(text, "vae_request_failures_total", reason="cancelled"),
    }


def test_a_client_that_leaves_stops_the_pass_at_the_next_resolution(slow: RunningServer) -> None:
    before = counts(slow)
    with socket.create_connection(("127.0.0.1", slow.port)) as sock:
        post_raw(sock, "/sample/stream", b'{"model": "tiny", "n": 1, "seed": 3}')
        received = b""
        while b"event: preview" not in received:  # the first resolution's preview, then leave
            received += sock.recv(65536)
    # The stage being computed when the client left is computed, finds nobody, and the pass stops.
    deadline = time.monotonic() + 10
    while counts(slow)["dropped"] == before["dropped"]:
        assert time.monotonic() < deadline, "the pass never noticed the client had gone"
        time.sleep(0.05)
    time.sleep(1.0)  # long enough for the rest of the pass (and its previews) had it gone on
    after = counts(slow)
    # tiny has 5 resolutions: a whole pass sends 4 previews, then 1 final image.
    assert (after["sent"] - before["sent"], after["dropped"] - before["dropped"]) == (1, 1)
    assert after["images"] == before["images"]  # the pass never reached its last layer
    assert after["cancelled"] == before["cancelled"] + 1


def test_a_missed_deadline_is_an_error_event_and_stops_the_pass(slow: RunningServer) -> None:
    dropped = counts(slow)["dropped"]
    with slow.client() as c:
        r = c.post("/sample/stream", json={"model": "tiny", "n": 1, "seed": 1, "timeout_ms": 300})
    events = parse_events(r.text)
    assert r.status_code == 200 and events[-1][0] == "error"
    problem = events[-1][1]
    assert problem["status"] == 504 and problem["type"] == "/problems/deadline-exceeded"
    assert "deadline" in problem["detail"]
    deadline = time.monotonic() + 10
    while counts(slow)["dropped"] == dropped:
        assert time.monotonic() < deadline, "the pass went on after the deadline"
        time.sleep(0.05)
