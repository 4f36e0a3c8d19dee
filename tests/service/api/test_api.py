"""End to end: every endpoint of a real uvicorn server, with real PNGs and model folders on disk."""

from __future__ import annotations

import base64
import io
import json
import math
import re

import httpx
import numpy as np
from PIL import Image

from ..conftest import digit_like, png_bytes


def decode_png(b64_or_bytes: str | bytes) -> np.ndarray:
    raw = base64.b64decode(b64_or_bytes) if isinstance(b64_or_bytes, str) else b64_or_bytes
    img = Image.open(io.BytesIO(raw))
    assert img.format == "PNG"
    return np.asarray(img)


def model_info(client: httpx.Client, name: str = "mnist") -> dict:
    r = client.get(f"/v1/models/{name}")
    assert r.status_code == 200, r.text
    return r.json()


# --------------------------------------------------------------------------------------------
# Metadata and health
# --------------------------------------------------------------------------------------------


def test_models_list_and_metadata(client: httpx.Client) -> None:
    r = client.get("/v1/models")
    assert r.status_code == 200
    models = {m["id"]: m for m in r.json()["data"]}
    assert set(models) == {"mnist", "tiny"}
    assert models["mnist"]["default"] and not models["tiny"]["default"]

    mnist = model_info(client, "mnist")
    assert (mnist["image_size"], mnist["image_channels"]) == (32, 1)
    assert mnist["num_classes"] == 10 and mnist["conditional"]
    assert mnist["num_layers"] == len(mnist["latent_shapes"]) > 1
    assert mnist["latent_shapes"][-1][1:] == [32, 32]  # the last layer is at image resolution
    assert mnist["parameters"] > 1000
    assert mnist["output_head"] in ("dmol", "gaussian")
    assert isinstance(mnist["provenance"], dict) and mnist["provenance"]
    tiny = model_info(client, "tiny")
    assert (tiny["image_channels"], tiny["num_classes"], tiny["conditional"]) == (3, 0, False)


def test_unknown_model_metadata_is_a_404_in_openais_shape(client: httpx.Client) -> None:
    """Under /v1/ errors have OpenAI's shape (its SDKs read them); the problem's slug is the code."""
    r = client.get("/v1/models/nope")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/json"
    error = r.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "model_not_found",
        None,
    )
    assert "mnist" in error["message"] and "tiny" in error["message"]
    assert client.get("/problems/" + error["code"].replace("_", "-")).status_code == 200


def test_errors_elsewhere_stay_problem_documents(client: httpx.Client) -> None:
    r = client.post("/sample", json={"model": "nope"})
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == "/problems/model-not-found"


def test_health_endpoints(client: httpx.Client) -> None:
    assert client.get("/health/live").status_code == 200
    r = client.get("/health/ready")
    assert r.status_code == 200
    assert r.json() == {"status": "ready", "models": ["mnist", "tiny"], "model_errors": {}}


def test_openapi_documents_endpoints_with_examples(client: httpx.Client) -> None:
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    for path in ("/sample", "/sample/stream", "/reconstruct", "/encode", "/decode", "/interpolate"):
        assert "post" in spec["paths"][path], path
    for path in ("/v1/models", "/v1/models/{name}", "/health/live", "/health/ready", "/metrics"):
        assert "get" in spec["paths"][path], path
    assert spec["components"]["schemas"]["SampleRequest"]["examples"]
    body = spec["paths"]["/reconstruct"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}
    assert body["multipart/form-data"]["schema"]["properties"]["image"]["format"] == "binary"
    assert "422" in spec["paths"]["/sample"]["post"]["responses"]
    assert "text/event-stream" in spec["paths"]["/sample/stream"]["post"]["responses"]["200"]["content"]
    interpolate = spec["paths"]["/interpolate"]["post"]["requestBody"]["content"]
    refs = re.findall(r'"\$ref": "#/components/schemas/(\w+)"', json.dumps(spec))
    assert set(refs) <= set(spec["components"]["schemas"])  # nothing left dangling
    assert interpolate["application/json"]["schema"]["properties"]["start"]["anyOf"]


def test_request_id_is_echoed_in_header_and_problem(client: httpx.Client) -> None:
    r = client.post("/sample", json={"n": 0}, headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    assert r.json()["request_id"] == "abc-123"
    generated = client.get("/health/live").headers["x-request-id"]
    assert len(generated) == 32


# --------------------------------------------------------------------------------------------
# /sample
# --------------------------------------------------------------------------------------------


def test_sample_returns_pngs_and_seeds(client: httpx.Client) -> None:
    r = client.post("/sample", json={"n": 3, "seed": 10})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "mnist"
    assert [d["seed"] for d in body["data"]] == [10, 11, 12]
    images = [decode_png(d["b64_json"]) for d in body["data"]]
    assert all(img.shape == (32, 32) and img.dtype == np.uint8 for img in images)
    assert not np.array_equal(images[0], images[1])  # different seeds, different images
    # Image i uses seed + i: asking for seed 11 alone gives the second image.
    alone = client.post("/sample", json={"n": 1, "seed": 11}).json()["data"][0]
    assert alone["b64_json"] == body["data"][1]["b64_json"]


def test_sample_larger_than_a_batch_is_served_whole(server, client: httpx.Client) -> None:
    n = server.app.state.service.settings.max_batch_size + 4  # split over several passes
    r = client.post("/sample", json={"n": n, "seed": 100, "label": 2})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert [d["seed"] for d in data] == list(range(100, 100 + n))
    last = client.post("/sample", json={"n": 1, "seed": 100 + n - 1, "label": 2}).json()["data"][0]
    assert last == data[-1]


def test_sample_without_seed_returns_the_seeds_it_used(client: httpx.Client) -> None:
    first = client.post("/sample", json={"n": 2}).json()["data"]
    seeds = [d["seed"] for d in first]
    assert seeds[1] == seeds[0] + 1
    again = client.post("/sample", json={"n": 2, "seed": seeds[0]}).json()["data"]
    assert [d["b64_json"] for d in again] == [d["b64_json"] for d in first]


def test_sample_accept_png_returns_the_image_or_a_grid(client: httpx.Client) -> None:
    r = client.post("/sample", json={"n": 1, "seed": 5}, headers={"Accept": "image/png"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/png"
    assert r.headers["x-seed"] == "5"
    single = decode_png(r.content)
    assert single.shape == (32, 32)
    json_form = client.post("/sample", json={"n": 1, "seed": 5}).json()["data"][0]["b64_json"]
    assert np.array_equal(single, decode_png(json_form))

    r = client.post("/sample", json={"n": 4, "seed": 5}, headers={"Accept": "image/png"})
    assert r.headers["x-seeds"] == "5,6,7,8"
    assert r.headers["x-grid-columns"] == "2"
    tiled = decode_png(r.content)
    assert tiled.shape == (2 * 32 + 3 * 2, 2 * 32 + 3 * 2)
    assert np.array_equal(tiled[2:34, 2:34], single)  # the first tile is seed 5


def test_sample_labels_guidance_and_temperatures_change_the_image(client: httpx.Client) -> None:
    L = model_info(client)["num_layers"]

    def image(**params) -> str:
        r = client.post("/sample", json={"n": 1, "seed": 3, **params})
        assert r.status_code == 200, r.text
        return r.json()["data"][0]["b64_json"]

    plain = image(label=None, temperature=1.0)
    assert image(label=4, temperature=1.0) != plain
    assert image(label=4, guidance={"mean": 2.0, "variance": 1.0}) != image(label=4, guidance=None)
    assert image(label=None, temperature=0.0) != plain
    assert image(label=None, temperature=[1.0] * L) == plain  # one value per layer, all 1: the same draw
    assert image(label=None, temperature=[1.0] * (L - 1) + [0.0]) != plain


# --------------------------------------------------------------------------------------------
# /reconstruct
# --------------------------------------------------------------------------------------------


def test_reconstruct_multipart_and_json_agree(client: httpx.Client) -> None:
    png = png_bytes(digit_like())
    L = model_info(client)["num_layers"]
    multipart = client.post("/reconstruct", files={"image": ("d.png", png, "image/png")}, data={"seed": "4"})
    assert multipart.status_code == 200, multipart.text
    body = multipart.json()
    assert body["layers"] == L  # all layers by default
    as_json = client.post(
        "/reconstruct", json={"image_b64": base64.b64encode(png).decode(), "seed": 4}
    ).json()
    assert as_json["data"] == body["data"]
    rec = body["data"][0]
    assert rec["seed"] == 4 and rec["bits"] > 0
    assert decode_png(rec["b64_json"]).shape == (32, 32)


def test_reconstruct_depth_controls_the_bits_used(client: httpx.Client) -> None:
    png64 = base64.b64encode(png_bytes(digit_like())).decode()
    L = model_info(client)["num_layers"]
    bits = {}
    for layers in (0, 1, L):
        r = client.post("/reconstruct", json={"image_b64": png64, "layers": layers, "seed": 1})
        assert r.status_code == 200, r.text
        bits[layers] = r.json()["data"][0]["bits"]
    assert bits[0] == 0.0  # nothing taken from the image: an unconditional sample
    assert 0 <= bits[1] <= bits[L]
    # layers=0 is the prior sample with the same seed
    r0 = client.post("/reconstruct", json={"image_b64": png64, "layers": 0, "seed": 1}).json()
    temperature = model_info(client)["sampling"]["temperature"]  # /reconstruct's default, as /sample's
    s0 = client.post("/sample", json={"n": 1, "seed": 1, "label": None, "temperature": temperature}).json()
    assert r0["data"][0]["b64_json"] == s0["data"][0]["b64_json"]


def test_reconstruct_accepts_jpeg_and_png_response(client: httpx.Client) -> None:
    jpeg = png_bytes(digit_like(), fmt="JPEG")
    r = client.post(
        "/reconstruct",
        files={"image": ("d.jpg", jpeg, "image/jpeg")},
        data={"layers": "2", "seed": "0"},
        headers={"Accept": "image/png"},
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    assert float(r.headers["x-bits"]) >= 0
    assert decode_png(r.content).shape == (32, 32)


def test_reconstruct_unconditional_rgb_model(client: httpx.Client) -> None:
    png = png_bytes(digit_like(channels=3))
    r = client.post("/reconstruct", files={"image": ("d.png", png, "image/png")}, data={"model": "tiny"})
    assert r.status_code == 200, r.text
    assert decode_png(r.json()["data"][0]["b64_json"]).shape == (32, 32, 3)


# --------------------------------------------------------------------------------------------
# /encode and /decode
# --------------------------------------------------------------------------------------------


def test_encode_reports_consistent_rates_and_latents(client: httpx.Client) -> None:
    info = model_info(client)
    png = png_bytes(digit_like())
    r = client.post(
        "/encode", files={"image": ("d.png", png, "image/png")}, data={"latents": "2", "seed": "0"}
    )
    assert r.status_code == 200, r.text
    e = r.json()
    assert e["dims"] == 32 * 32
    assert len(e["kl_bits"]) == info["num_layers"]
    assert all(k >= -1e-4 for k in e["kl_bits"])  # KL is non-negative
    assert math.isclose(e["kl_bits_total"], sum(e["kl_bits"]), rel_tol=1e-6)
    assert math.isclose(e["rate_bits_per_dim"], e["kl_bits_total"] / e["dims"], rel_tol=1e-4)
    assert math.isclose(
        e["elbo_bits_per_dim"], e["rate_bits_per_dim"] + e["distortion_bits_per_dim"], rel_tol=1e-4
    )
    assert e["distortion_bits_per_dim"] > 0
    assert [t["layer"] for t in e["latents"]] == [0, 1]
    for t, shape in zip(e["latents"], info["latent_shapes"]):
        assert t["shape"] == shape and t["dtype"] == "float32"
        z = np.frombuffer(base64.b64decode(t["data"]), dtype="<f4")
        assert z.size == np.prod(shape) and np.isfinite(z).all()
    # Without `latents`, none are returned; the same seed gives the same statistics.
    again = client.post("/encode", json={"image_b64": base64.b64encode(png).decode(), "seed": 0}).json()
    assert again["latents"] == [] and again["kl_bits"] == e["kl_bits"]


def test_decode_takes_latents_as_encode_returns_them(client: httpx.Client) -> None:
    info = model_info(client)
    L = info["num_layers"]
    png64 = base64.b64encode(png_bytes(digit_like())).decode()
    enc = client.post("/encode", json={"image_b64": png64, "latents": L, "seed": 0}).json()
    top2 = enc["latents"][:2]

    r = client.post("/decode", json={"latents": top2, "seed": 5})
    assert r.status_code == 200, r.text
    first = r.json()["data"][0]
    assert first["seed"] == 5 and decode_png(first["b64_json"]).shape == (32, 32)
    assert client.post("/decode", json={"latents": top2, "seed": 5}).json()["data"][0] == first
    # Other top latents, same seed: another image.
    other = [dict(t, data=base64.b64encode(np.full(t["shape"], 2.0, "<f4").tobytes()).decode()) for t in top2]
    assert client.post("/decode", json={"latents": other, "seed": 5}).json()["data"][0] != first
    # Every layer given: the temperature of the (unused) prior no longer matters.
    full_hot = client.post("/decode", json={"latents": enc["latents"], "seed": 5, "temperature": 1.0})
    full_cold = client.post("/decode", json={"latents": enc["latents"], "seed": 5, "temperature": 0.1})
    assert full_hot.status_code == 200, full_hot.text
    assert full_hot.json()["data"] == full_cold.json()["data"]
    png = client.post("/decode", json={"latents": top2, "seed": 5}, headers={"Accept": "image/png"})
    assert png.headers["content-type"] == "image/png"
    assert np.array_equal(decode_png(png.content), decode_png(first["b64_json"]))
