"""End to end: POST /interpolate between seeds and images, JSON and multipart, on a real server."""

from __future__ import annotations

import asyncio
import base64

import httpx
import numpy as np

from ..conftest import RunningServer, digit_like, metric_value, png_bytes, run_async
from .test_api import decode_png

PNG = png_bytes(digit_like(seed=3))


def images(r: httpx.Response) -> list[np.ndarray]:
    assert r.status_code == 200, r.text
    return [decode_png(d["b64_json"]) for d in r.json()["data"]]


def test_seed_ends_are_the_samples_of_sample(client: httpx.Client) -> None:
    r = client.post("/interpolate", json={"start": {"seed": 21}, "end": 22, "steps": 5, "label": 4})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "mnist" and body["layers"] == client.get("/v1/models/mnist").json()["num_layers"]
    assert [d["t"] for d in body["data"]] == [0.0, 0.25, 0.5, 0.75, 1.0]
    sampled = client.post("/sample", json={"n": 2, "seed": 21, "label": 4}).json()["data"]
    assert body["data"][0]["b64_json"] == sampled[0]["b64_json"]
    assert body["data"][-1]["b64_json"] == sampled[1]["b64_json"]
    middle = images(r)[1:-1]
    assert all(not np.array_equal(m, decode_png(sampled[0]["b64_json"])) for m in middle)


def test_left_out_the_label_follows_the_start_seed_and_the_path_starts_at_its_sample(
    client: httpx.Client,
) -> None:
    r = client.post("/interpolate", json={"start": 23, "end": 24, "steps": 3})
    assert r.status_code == 200, r.text
    assert r.json()["label"] == 3  # the bundled model's rule: seed 23 -> 23 mod 10
    alone = client.post("/sample", json={"n": 1, "seed": 23}).json()["data"][0]
    assert alone["label"] == 3 and r.json()["data"][0]["b64_json"] == alone["b64_json"]
    end = client.post("/sample", json={"n": 1, "seed": 24, "label": 3}).json()["data"][0]
    assert r.json()["data"][-1]["b64_json"] == end["b64_json"]
    png = client.post(
        "/interpolate", json={"start": 23, "end": 24, "steps": 3}, headers={"accept": "image/png"}
    )
    assert png.headers["x-labels"] == "3,3,3"
    # an explicit null is the unconditional prior; an image start has no seed's label
    assert client.post("/interpolate", json={"start": 23, "end": 24, "label": None}).json()["label"] is None
    r = client.post("/interpolate", files={"start": ("d.png", PNG, "image/png")}, data={"end": "24"})
    assert r.status_code == 200, r.text
    assert r.json()["label"] is None


def test_image_ends_are_their_reconstructions_multipart_and_json_alike(client: httpx.Client) -> None:
    other = png_bytes(digit_like(seed=4)[::-1].copy())
    form = client.post(
        "/interpolate",
        files={"start": ("a.png", PNG), "end": ("b.png", other)},
        data={"steps": "4", "seed": "8"},
    )
    b64 = {"image_b64": base64.b64encode(PNG).decode()}
    as_json = client.post(
        "/interpolate",
        json={"start": b64, "end": {"image_b64": base64.b64encode(other).decode()}, "steps": 4, "seed": 8},
    )
    assert [d["b64_json"] for d in form.json()["data"]] == [d["b64_json"] for d in as_json.json()["data"]]
    path = images(form)
    for image, end in ((path[0], PNG), (path[-1], other)):
        rec = client.post("/reconstruct", files={"image": ("x.png", end)}, data={"seed": "8"})
        d = np.abs(image.astype(int) - decode_png(rec.json()["data"][0]["b64_json"]).astype(int))
        assert d.max() <= 1 and (d > 0).mean() <= 1e-3  # the same image, bar rounding


def test_a_seed_to_an_image(client: httpx.Client) -> None:
    r = client.post(
        "/interpolate", files={"end": ("b.png", PNG)}, data={"start": "5", "steps": "3", "label": "2"}
    )
    first = images(r)[0]
    alone = client.post("/sample", json={"n": 1, "seed": 5, "label": 2}).json()["data"][0]["b64_json"]
    assert np.array_equal(first, decode_png(alone))


def test_no_layer_interpolated_gives_one_image_throughout(client: httpx.Client) -> None:
    r = client.post(
        "/interpolate", json={"start": 1, "end": 2, "steps": 3, "layers": 0, "temperature": 0.5, "seed": 3}
    )
    path = images(r)
    assert r.json()["layers"] == 0 and r.json()["seed"] == 3
    assert all(np.array_equal(path[0], p) for p in path)


def test_unconditional_rgb_model_and_a_png_row(client: httpx.Client) -> None:
    r = client.post(
        "/interpolate",
        json={"model": "tiny", "start": 1, "end": 2, "steps": 6},
        headers={"Accept": "image/png"},
    )
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.headers["x-grid-columns"] == "6"
    row = decode_png(r.content)
    assert row.shape == (32 + 4, 6 * 34 + 2, 3)  # one row of six 32x32 RGB images, 2-pixel borders


def test_concurrent_interpolations_share_passes_and_each_gets_its_own_path(
    server: RunningServer, client: httpx.Client
) -> None:
    """Like every operation: requests queued together run in shared passes (the batch-size
    histogram), and a path's images do not depend on what else was in its pass."""
    bodies = [{"start": s, "end": s + 1, "steps": 3, "label": s % 10} for s in range(30, 34)]
    image = {"image_b64": base64.b64encode(PNG).decode()}
    bodies.append({"start": image, "end": 3, "steps": 2, "layers": 5, "seed": 9})  # a fixed seed below
    alone = [client.post("/interpolate", json=b).json()["data"] for b in bodies]

    def passes() -> tuple[float, float]:
        text, labels = server.metrics(), {"model": "mnist", "operation": "interpolate"}
        return metric_value(text, "vae_batch_size_count", **labels), metric_value(
            text, "vae_batch_size_sum", **labels
        )

    async def together() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as c:
            return await asyncio.gather(*(c.post("/interpolate", json=b) for b in bodies))

    (passes0, images0), responses = passes(), run_async(together())
    (passes1, images1) = passes()
    assert [r.status_code for r in responses] == [200] * len(bodies)
    assert images1 - images0 == 4 * 3 + 2
    assert passes1 - passes0 < len(bodies), "5 concurrent interpolations ran in 5 passes: nothing was batched"
    # The same images bar rounding: as for /sample, float kernels may round differently at another
    # batch size (the model's batch tests allow one level in 0.1% of pixels, and so does this).
    for r, path in zip(responses, alone):
        assert [d["t"] for d in r.json()["data"]] == [d["t"] for d in path]
        for got, want in zip(images(r), (decode_png(d["b64_json"]) for d in path)):
            d = np.abs(got.astype(int) - want.astype(int))
            assert d.max() <= 1 and (d > 0).mean() <= 1e-3
