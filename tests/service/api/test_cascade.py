"""Cascades and /upscale over real HTTP: a served cascade runs its stages in one /sample request, each
stage on its model's own batcher, with per-stage options and per-image seeds; /upscale
super-resolves an uploaded low-resolution image; bad inputs are 422 problems that name the field.

The models are tiny, randomly initialised and saved to real folders: a 16x16 base with attention
("base16", so a model with attention is served like any other), a 16 -> 32 super-resolution model
("sr16to32"), the cascade "digits" naming both, and the cascade "packed" holding its own copies.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from model.cascade import CascadeStage, StageOptions, save_cascade_folder
from model.checkpoint import save_model_folder
from tests.factories import perturbed, tiny_base16, tiny_sr16to32
from tests.service.conftest import RunningServer, digit_like, metric_value, png_bytes, running_server


@pytest.fixture(scope="module")
def cascade_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cascade-models")
    base = perturbed(tiny_base16().replace(attention="8"), seed=2)
    sr = perturbed(tiny_sr16to32(), seed=3)
    save_model_folder(base, root / "base16", {"source": "tests/service"})
    save_model_folder(sr, root / "sr16to32", {"source": "tests/service"})
    stages = [CascadeStage("base16", base), CascadeStage("sr16to32", sr, StageOptions(low_res_noise=0.1))]
    save_cascade_folder(root / "digits", stages)
    for name, vae in (("base", base), ("sr", sr)):
        save_model_folder(vae, root / "packed" / name, {})
    save_cascade_folder(
        root / "packed", [CascadeStage(n, v, place="folder") for n, v in (("base", base), ("sr", sr))]
    )
    return root


@pytest.fixture(scope="module")
def cascade_server(cascade_dir: Path) -> Iterator[RunningServer]:
    with running_server(cascade_dir, default_model="digits", max_batch_size=16, max_batch_delay_ms=30) as s:
        yield s


@pytest.fixture()
def http(cascade_server: RunningServer) -> Iterator[httpx.Client]:
    with cascade_server.client() as c:
        yield c


def images_of(response: httpx.Response) -> list[np.ndarray]:
    assert response.status_code == 200, response.text
    return [
        np.asarray(Image.open(io.BytesIO(base64.b64decode(d["b64_json"])))) for d in response.json()["data"]
    ]


def b64(array: np.ndarray) -> str:
    return base64.b64encode(png_bytes(array)).decode()


def problem(response: httpx.Response, status: int = 422) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return response.json()


# --------------------------------------------------------------------------------------------
# /v1/models
# --------------------------------------------------------------------------------------------


def test_models_describe_the_cascades_and_their_stages(http):
    models = {m["id"]: m for m in http.get("/v1/models").json()["data"]}
    assert set(models) == {"base16", "sr16to32", "digits", "packed"}  # a cascade's own stages are not listed
    digits = models["digits"]
    assert digits["object"] == "cascade" and digits["default"]
    assert (digits["image_size"], digits["image_channels"], digits["num_classes"]) == (32, 1, 10)
    assert [(s["model"], s["served"], s["image_size"], s["low_res"]) for s in digits["stages"]] == [
        ("base16", True, 16, 0),
        ("sr16to32", True, 32, 16),
    ]
    assert digits["stages"][1]["options"] == {"low_res_noise": 0.1}
    assert digits["num_layers"] == models["base16"]["num_layers"] + models["sr16to32"]["num_layers"]
    assert [(s["model"], s["served"]) for s in models["packed"]["stages"]] == [
        ("packed.stage0", False),
        ("packed.stage1", False),
    ]
    assert models["sr16to32"]["low_res"] == 16 and models["sr16to32"]["object"] == "model"
    assert models["base16"]["attention"] == "8" and models["base16"]["low_res"] == 0
    assert http.get("/v1/models/digits").json()["stages"] == digits["stages"]
    assert set(http.get("/health/ready").json()["models"]) == set(models)


# --------------------------------------------------------------------------------------------
# /sample on a cascade
# --------------------------------------------------------------------------------------------


def test_a_cascade_samples_its_last_stage_with_the_images_seeds_and_labels(http):
    r = http.post("/sample", json={"model": "digits", "n": 3, "seed": 5})
    images = images_of(r)
    assert [img.shape for img in images] == [(32, 32)] * 3
    assert [(d["seed"], d["label"]) for d in r.json()["data"]] == [(5, 5), (6, 6), (7, 7)]  # the base's rule
    assert r.json()["model"] == "digits"
    again = images_of(http.post("/sample", json={"model": "digits", "n": 3, "seed": 5}))
    assert all(np.array_equal(a, b) for a, b in zip(images, again))
    # The stages' own folders ("packed") hold the same weights: the same images.
    packed = images_of(http.post("/sample", json={"model": "packed", "n": 3, "seed": 5}))
    assert all(np.array_equal(a, b) for a, b in zip(images, packed))


def test_an_image_of_a_cascade_does_not_depend_on_its_batch(cascade_server, http):
    """Concurrent requests (to the cascade and to its stages' models directly) share batches at
    each stage; every image is the one its seed gives alone."""
    alone = {s: images_of(http.post("/sample", json={"model": "digits", "seed": s}))[0] for s in (20, 21, 22)}
    before = cascade_server.metrics()
    bodies = [
        {"model": "digits", "n": 3, "seed": 20},
        {"model": "digits", "seed": 21},
        {"model": "digits", "seed": 22},
    ]
    bodies += [{"model": "base16", "n": 2, "seed": 1}] * 2
    with ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(lambda b: cascade_server.client().post("/sample", json=b), bodies))
    batch = images_of(answers[0])
    for s, img in zip((20, 21, 22), batch):
        assert np.abs(img.astype(int) - alone[s]).max() <= 1  # float summation order only
    for s, r in zip((21, 22), answers[1:3]):
        assert np.abs(images_of(r)[0].astype(int) - alone[s]).max() <= 1
    assert not np.array_equal(batch[0], batch[1])
    after = cascade_server.metrics()
    for model, op in (("base16", "sample"), ("sr16to32", "upscale")):
        run = metric_value(after, "vae_images_total", model=model, operation=op) - metric_value(
            before, "vae_images_total", model=model, operation=op
        )
        assert run > 0, (model, op)


def test_each_stage_takes_its_own_options(http):
    body = {"model": "digits", "n": 2, "seed": 3, "label": 4}
    default = images_of(http.post("/sample", json=body))
    cold_sr = images_of(http.post("/sample", json={**body, "stages": [{}, {"temperature": 0.0}]}))
    noisy_sr = images_of(http.post("/sample", json={**body, "stages": [{}, {"low_res_noise": 0.9}]}))
    guided = images_of(
        http.post("/sample", json={**body, "stages": [{"guidance": {"mean": 3.0, "variance": 1.0}}, {}]})
    )
    r = http.post("/sample", json=body)
    assert [d["label"] for d in r.json()["data"]] == [4, 4]
    for other in (cold_sr, noisy_sr, guided):
        assert any(not np.array_equal(a, b) for a, b in zip(default, other))
    same = images_of(http.post("/sample", json={**body, "stages": [{}, {}]}))
    assert all(np.array_equal(a, b) for a, b in zip(default, same))


def test_a_cascade_streams_stage_by_stage(http):
    body = {"model": "digits", "n": 2, "seed": 9}
    with http.stream("POST", "/sample/stream", json=body) as r:
        assert r.status_code == 200 and r.headers["x-seeds"] == "9,10"
        labels = [None if y == "null" else int(y) for y in r.headers["x-labels"].split(",")]
        events = [e for e in r.read().decode().split("\n\n") if e.strip()]
    parsed = [(e.split("\n")[0].removeprefix("event: "), json.loads(e.split("data: ", 1)[1])) for e in events]
    assert [name for name, _ in parsed] == ["preview", "final"]
    (_, preview), (_, final) = parsed
    assert (preview["stage"], preview["stages"], preview["resolution"]) == (0, 2, 16)
    assert final["model"] == "digits" and final["resolution"] == 32 and final["layers"] == final["num_layers"]
    low = [np.asarray(Image.open(io.BytesIO(base64.b64decode(d["b64_json"])))) for d in preview["data"]]
    base = images_of(http.post("/sample", json={"model": "base16", "n": 2, "seed": 9}))
    assert all(np.array_equal(a, b) for a, b in zip(low, base))  # the base stage draws the image's seed
    high = [np.asarray(Image.open(io.BytesIO(base64.b64decode(d["b64_json"])))) for d in final["data"]]
    sampled = images_of(http.post("/sample", json=body))
    assert all(np.array_equal(a, b) for a, b in zip(high, sampled))
    # every event and the header report the labels /sample reports
    reported = [d["label"] for d in http.post("/sample", json=body).json()["data"]]
    assert labels == reported == [d["label"] for d in preview["data"]] == [d["label"] for d in final["data"]]


@pytest.mark.parametrize(
    ("body", "loc", "message"),
    [
        ({"temperature": 0.5}, ["body", "temperature"], "stages[k].temperature"),
        ({"guidance": {"mean": 1.0}}, ["body", "guidance"], "is a cascade"),
        ({"stages": [{}]}, ["body", "stages"], "got 1 stages; cascade 'digits' has 2"),
        ({"stages": [{}, {"temperature": 99.0}]}, ["body", "stages", 1, "temperature"], "out of range"),
        ({"stages": [{}, {"temperature": [1.0]}]}, ["body", "stages", 1, "temperature"], "latent layers"),
        ({"stages": [{"low_res_noise": 0.1}, {}]}, ["body", "stages", 0, "low_res_noise"], "base stage"),
        (
            {"stages": [{}, {"low_res_noise": 2.0}]},
            ["body", "stages", 1, "low_res_noise"],
            "less than or equal",
        ),
        ({"label": 10}, ["body", "label"], "out of range"),
        (
            {"stages": [{"guidance": {"mean": 1.0}}, {}], "label": None},
            ["body", "stages", 0, "guidance"],
            "label",
        ),
    ],
)
def test_bad_cascade_requests_are_422_problems_naming_the_field(http, body, loc, message):
    p = problem(http.post("/sample", json={"model": "digits", **body}))
    assert any(e["loc"] == loc for e in p["errors"]), p
    assert message in p["detail"], p["detail"]


def test_cascade_only_fields_and_endpoints_are_explained(http):
    p = problem(http.post("/sample", json={"model": "base16", "stages": [{}]}))
    assert "is not a cascade" in p["detail"]
    p = problem(http.post("/sample", json={"model": "sr16to32"}))
    assert "is a super-resolution model" in p["detail"] and "/upscale" in p["detail"]
    x = b64(digit_like(32, 1))
    p = problem(http.post("/reconstruct", json={"model": "digits", "image_b64": x}))
    assert "is a cascade" in p["detail"]
    # A super-resolution model reconstructs and encodes an image of its size, conditioned on the
    # image average-pooled to its low resolution.
    rec = http.post("/reconstruct", json={"model": "sr16to32", "image_b64": x, "seed": 0})
    assert rec.status_code == 200, rec.text
    enc = http.post("/encode", json={"model": "sr16to32", "image_b64": x, "seed": 0})
    assert enc.status_code == 200 and len(enc.json()["kl_bits"]) > 0


# --------------------------------------------------------------------------------------------
# /upscale
# --------------------------------------------------------------------------------------------


def test_upscale_super_resolves_an_uploaded_image(http):
    low = digit_like(16, 1)
    r = http.post("/upscale", json={"model": "sr16to32", "image_b64": b64(low), "seed": 3, "label": 2})
    (img,) = images_of(r)
    assert img.shape == (32, 32)
    assert [(d["seed"], d["label"]) for d in r.json()["data"]] == [(3, 2)]
    form = http.post(
        "/upscale",
        files={"image": ("low.png", png_bytes(low), "image/png")},
        data={"model": "sr16to32", "seed": "3", "label": "2"},
    )
    assert np.array_equal(images_of(form)[0], img)  # the same seed: the same image
    png = http.post(
        "/upscale",
        json={"model": "digits", "image_b64": b64(low), "seed": 3, "label": 2},
        headers={"Accept": "image/png"},
    )  # a cascade's first super-resolution stage, which is sr16to32
    assert png.headers["content-type"] == "image/png" and png.headers["x-seed"] == "3"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png.content))), img)
    other = images_of(
        http.post("/upscale", json={"model": "sr16to32", "image_b64": b64(255 - low), "seed": 3, "label": 2})
    )[0]
    assert not np.array_equal(other, img)  # the low-resolution input steers the image


def test_upscale_continues_a_cascade_stage_with_its_seed(http):
    """A stage-k image of a cascade is /upscale of stage k-1's image with the stage's seed."""
    from model.cascade import stage_seeds

    with http.stream("POST", "/sample/stream", json={"model": "digits", "seed": 40}) as r:
        preview = json.loads(r.read().decode().split("data: ", 1)[1].split("\n")[0])
    low = preview["data"][0]["b64_json"]
    final = images_of(http.post("/sample", json={"model": "digits", "seed": 40}))[0]
    seed = stage_seeds([40], 1)[0]
    up = http.post(
        "/upscale",
        json={"model": "sr16to32", "image_b64": low, "seed": seed, "label": 0, "low_res_noise": 0.1},
    )
    assert np.array_equal(images_of(up)[0], final)


@pytest.mark.parametrize(
    ("body", "status", "slug", "message"),
    [
        ({"model": "sr16to32", "image_b64": "big"}, 422, "invalid-image", "expected a 16x16 grey-scale"),
        ({"model": "sr16to32", "image_b64": "rgb"}, 422, "invalid-image", "expected a 16x16 grey-scale"),
        ({"model": "base16", "image_b64": "low"}, 422, "invalid-input", "is not a super-resolution model"),
        ({"model": "digits", "stage": 2, "image_b64": "low"}, 422, "invalid-input", "stages 1..1"),
        ({"model": "sr16to32", "stage": 1, "image_b64": "low"}, 422, "invalid-input", "is not a cascade"),
        ({"model": "sr16to32", "image_b64": "low", "label": 12}, 422, "invalid-input", "out of range"),
        (
            {"model": "sr16to32", "image_b64": "low", "low_res_noise": -1},
            422,
            "invalid-input",
            "greater than",
        ),
        ({"model": "nope", "image_b64": "low"}, 404, "model-not-found", "no model named 'nope'"),
        ({"model": "sr16to32"}, 422, "invalid-input", "image_b64"),
    ],
)
def test_bad_upscale_requests_are_problems(http, body, status, slug, message):
    images = {"low": digit_like(16, 1), "big": digit_like(32, 1), "rgb": digit_like(16, 3)}
    if "image_b64" in body:
        body = {**body, "image_b64": b64(images[body["image_b64"]])}
    p = problem(http.post("/upscale", json=body), status)
    assert p["type"] == f"/problems/{slug}" and message in p["detail"], p


def test_the_client_and_the_cli_upscale(cascade_server, cascade_dir, http, tmp_path):
    from service.client import Client
    from tests.service.cli.test_cli import vdvae

    low = digit_like(16, 1, seed=4)
    body = {"model": "sr16to32", "image_b64": b64(low), "seed": 8, "label": 1, "low_res_noise": 0.05}
    png = http.post("/upscale", json=body, headers={"Accept": "image/png"}).content
    with Client(cascade_server.url) as client:
        (image,) = client.upscale(low, model="sr16to32", seed=8, label=1, low_res_noise=0.05)
        digits, sr = client.model("digits"), client.model("sr16to32")
    assert (image.seed, image.label) == (8, 1) and image.png == png
    assert digits.object == "cascade" and [s["model"] for s in digits.stages] == ["base16", "sr16to32"]
    assert (sr.object, sr.low_res, sr.stages) == ("model", 16, None)
    (tmp_path / "small.png").write_bytes(png_bytes(low))
    args = (
        "upscale",
        "small.png",
        "--model",
        "sr16to32",
        "--seed",
        "8",
        "--label",
        "1",
        "--low-res-noise",
        "0.05",
    )
    out = vdvae(*args, "-o", "big.png", cwd=tmp_path, url=cascade_server.url)
    assert (tmp_path / "big.png").read_bytes() == png and "seed 8, label 1" in out.stdout
    vdvae(*args, "-o", "local.png", "--local", str(cascade_dir / "sr16to32"), cwd=tmp_path)
    assert (tmp_path / "local.png").read_bytes() == png  # the service in this process: the same bytes
    bad = vdvae(
        "upscale", "big.png", "--model", "sr16to32", cwd=tmp_path, url=cascade_server.url, check=False
    )
    assert bad.returncode == 2 and "16x16" in bad.stderr
