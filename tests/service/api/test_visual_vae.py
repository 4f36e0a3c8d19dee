"""The visual-vae family served like every model, over real HTTP: folders converted from files in
their layout (`vdvae convert`, random weights made here) of each kind: unconditional, class-
conditional with CIFAR-10's class names, 8 -> 16 super-resolution, and the cascade of the last two.
Every endpoint answers what the library computes for the same seeds; labels may be names; bad
inputs are clear 4xx problems."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from model.cascade import load_cascade
from model.checkpoint import load_model
from model.tools.convert import main as convert
from tests.factories import visual_vae_config_file, visual_vae_file

from ..conftest import RunningServer, png_bytes, running_server
from .conftest import By, Select, by_id, needs_browser, wait

KINDS = {"vv-uncond": "uncond16", "vv-cond": "cond8", "vv-sr": "sr8to16"}
MAX_GUIDANCE = 8.0


@pytest.fixture(scope="module")
def vv_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src, root = tmp_path_factory.mktemp("their-files"), tmp_path_factory.mktemp("vv-models")
    for name, kind in KINDS.items():
        weights = visual_vae_file(kind, src / f"{kind}_ema_weights.pt", seed=len(name))
        config = visual_vae_config_file(kind, src / f"{kind}.json")
        assert (
            convert(
                [str(weights), "--family", "visual-vae", "--config", str(config), "--out", str(root / name)]
            )
            == 0
        )
    assert (
        convert(["--cascade", str(root / "vv-cond"), str(root / "vv-sr"), "--out", str(root / "vv-cascade")])
        == 0
    )
    return root


@pytest.fixture(scope="module")
def vv_server(vv_dir: Path) -> Iterator[RunningServer]:
    with running_server(
        vv_dir, default_model="vv-cond", max_batch_size=16, max_batch_delay_ms=20, max_guidance=MAX_GUIDANCE
    ) as s:
        yield s


@pytest.fixture()
def http(vv_server: RunningServer) -> Iterator[httpx.Client]:
    with vv_server.client() as c:
        yield c


@pytest.fixture(scope="module")
def library(vv_dir: Path) -> dict:
    torch.set_num_threads(1)
    return {name: load_model(vv_dir / name, device="cpu") for name in KINDS}


def decoded(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))


def sample(http: httpx.Client, **body) -> dict:
    r = http.post("/sample", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def problem(r: httpx.Response, status: int = 422) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    return " ".join([body["detail"], *(e["msg"] for e in body.get("errors") or [])])


def test_models_list_the_family_and_the_class_names(http):
    models = {m["id"]: m for m in http.get("/v1/models").json()["data"]}
    assert {models[n]["family"] for n in (*KINDS, "vv-cascade")} == {"visual-vae"}
    assert models["vv-cond"]["classes"][:3] == ["airplane", "automobile", "bird"]
    assert models["vv-uncond"]["classes"] is None and models["vv-sr"]["low_res"] == 8
    assert models["vv-cond"]["sampling"]["guidance"] == {"mean": 2.0, "variance": 4.0}  # their evaluate.py
    assert models["vv-cascade"]["classes"] == models["vv-cond"]["classes"]
    assert models["vv-cond"]["provenance"]["source"] == "tcl9876/visual-vae"


@pytest.mark.parametrize("label", [3, "cat", "CAT", " 3 "])
def test_a_label_by_index_or_name_draws_the_same_images(http, library, label):
    got = sample(http, model="vv-cond", n=2, seed=5, label=label)
    assert [d["label"] for d in got["data"]] == [3, 3]
    want = library["vv-cond"].sample(2, labels=3, seeds=[5, 6]).numpy()
    assert all(np.array_equal(decoded(d["b64_json"]), w) for d, w in zip(got["data"], want, strict=True))


def test_every_plain_endpoint_answers_as_the_library(http, library):
    vae = library["vv-uncond"]
    got = sample(http, model="vv-uncond", n=3, seed=1, temperature=0.7)
    want = vae.sample(3, temperature=0.7, seeds=[1, 2, 3]).numpy()
    assert all(np.array_equal(decoded(d["b64_json"]), w) for d, w in zip(got["data"], want, strict=True))

    image = want[0]
    L = vae.hp.num_layers
    for layers in (0, 3, L):
        r = http.post(
            "/reconstruct",
            files={"image": png_bytes(image)},
            data={"model": "vv-uncond", "layers": str(layers), "seed": "9"},
        )
        assert r.status_code == 200, r.text
        rec = vae.reconstruct(torch.from_numpy(image[None]), layers=layers, seeds=[9])
        assert np.array_equal(decoded(r.json()["data"][0]["b64_json"]), rec.images[0].numpy())

    enc = http.post(
        "/encode",
        files={"image": png_bytes(image)},
        data={"model": "vv-uncond", "seed": "4", "latents": str(L)},
    )
    assert enc.status_code == 200, enc.text
    body = enc.json()
    assert len(body["kl_bits"]) == L and np.isfinite(body["elbo_bits_per_dim"])
    r = http.post("/decode", json={"model": "vv-uncond", "latents": body["latents"], "seed": 4})
    assert r.status_code == 200, r.text
    full = vae.reconstruct(torch.from_numpy(image[None]), layers=L, seeds=[4]).images[0].numpy()
    assert np.array_equal(decoded(r.json()["data"][0]["b64_json"]), full)

    r = http.post("/interpolate", json={"model": "vv-uncond", "start": 1, "end": 2, "steps": 4})
    assert r.status_code == 200, r.text
    path = [decoded(d["b64_json"]) for d in r.json()["data"]]
    ends = vae.sample(
        2, seeds=[1, 2]
    ).numpy()  # every layer interpolated: the seeds' samples at temperature 1
    assert np.array_equal(path[0], ends[0]) and np.array_equal(path[-1], ends[1])


def test_the_stream_sends_one_preview_per_resolution_then_the_samples(http):
    with http.stream(
        "POST", "/sample/stream", json={"model": "vv-cond", "n": 2, "seed": 3, "label": "ship"}
    ) as r:
        assert r.status_code == 200
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    previews = [e for e in events if e.get("event", "preview") == "preview" and "resolution" in e]
    assert [p["resolution"] for p in previews][:2] == [1, 4]
    final = events[-1]["data"]
    direct = sample(http, model="vv-cond", n=2, seed=3, label="ship")["data"]
    assert [d["b64_json"] for d in final] == [d["b64_json"] for d in direct]


def test_guidance_at_the_limit_gives_real_images(http, library):
    got = sample(
        http, model="vv-cond", n=2, seed=8, label=1, guidance={"mean": MAX_GUIDANCE, "variance": MAX_GUIDANCE}
    )
    vae = library["vv-cond"]
    params = vae.sample_params(2, labels=1, guidance=(MAX_GUIDANCE, MAX_GUIDANCE), seeds=[8, 9])
    assert torch.isfinite(params).all()
    assert all(
        np.array_equal(decoded(d["b64_json"]), w)
        for d, w in zip(got["data"], vae.params_to_images(params).numpy(), strict=True)
    )


def test_upscale_takes_an_image_of_the_low_resolution(http, library):
    low = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    r = http.post(
        "/upscale", files={"image": png_bytes(low)}, data={"model": "vv-sr", "seed": "2", "label": '"truck"'}
    )
    assert r.status_code == 200, r.text
    want = library["vv-sr"].sample(1, labels=9, seeds=[2], low_res=torch.from_numpy(low[None]))
    assert np.array_equal(decoded(r.json()["data"][0]["b64_json"]), want[0].numpy())
    wrong = http.post(
        "/upscale", files={"image": png_bytes(np.zeros((16, 16, 3), np.uint8))}, data={"model": "vv-sr"}
    )
    assert "8x8 RGB" in problem(wrong) and "got 16x16" in problem(wrong)


def test_the_cascade_is_their_chain_and_each_image_its_own(http, vv_dir):
    one = sample(http, model="vv-cascade", n=1, seed=11, label="dog")["data"]
    three = sample(http, model="vv-cascade", n=3, seed=11, label="dog")["data"]
    assert decoded(one[0]["b64_json"]).shape == (16, 16, 3)
    assert one[0]["b64_json"] == three[0]["b64_json"]  # independent of its batch
    library = load_cascade(vv_dir / "vv-cascade", device="cpu")  # the raw mean between the stages
    want = library.sample(3, labels=5, seeds=[11, 12, 13]).numpy()
    assert all(np.array_equal(decoded(d["b64_json"]), w) for d, w in zip(three, want, strict=True))


def test_bad_labels_are_clear_problems(http):
    msg = problem(http.post("/sample", json={"model": "vv-cond", "n": 1, "label": "kat"}))
    assert "no class named 'kat'" in msg and "'cat'" in msg
    msg = problem(http.post("/sample", json={"model": "vv-uncond", "n": 1, "label": "cat"}))
    assert "unconditional" in msg
    msg = problem(http.post("/sample", json={"model": "vv-cond", "n": 1, "label": 10}))
    assert "out of range" in msg and "0..9" in msg
    msg = problem(http.post("/sample", json={"model": "vv-sr", "n": 1}))
    assert "super-resolution" in msg


def test_the_client_and_the_command_take_class_names(vv_server, library, tmp_path, capsys):
    from service.cli import main as vdvae
    from service.client import Client

    with Client(vv_server.url) as client:
        cat = client.sample(2, model="vv-cond", label="Cat", seed=21)
        info = client.model("vv-cond")
    assert cat.labels == [3, 3] and info.family == "visual-vae" and info.classes[3] == "cat"
    want = library["vv-cond"].sample(2, labels=3, seeds=[21, 22]).numpy()
    assert np.array_equal(cat.arrays(), want)

    out = tmp_path / "cats.png"
    assert (
        vdvae(
            [
                "sample",
                "-n",
                "2",
                "--model",
                "vv-cond",
                "--label",
                "cat",
                "--seed",
                "21",
                "-o",
                str(out),
                "--url",
                vv_server.url,
            ]
        )
        == 0
    )
    grid = np.asarray(Image.open(out).convert("RGB"))  # one row, 2 pixels between and around the images
    assert np.array_equal(grid[2:10, 2:10], want[0]) and np.array_equal(grid[2:10, 12:20], want[1])
    assert vdvae(["models", "--url", vv_server.url]) == 0
    table = capsys.readouterr().out
    assert "visual-vae" in table and "vv-cond: classes 0 airplane, 1 automobile" in table
    assert (
        vdvae(
            [
                "sample",
                "-n",
                "1",
                "--model",
                "vv-cond",
                "--label",
                "kat",
                "--url",
                vv_server.url,
                "-o",
                str(out),
            ]
        )
        == 2
    )
    assert "no class named 'kat'; close: 'cat'" in capsys.readouterr().err


@needs_browser
def test_the_playground_names_the_family_and_each_class(browser, vv_server):
    browser.get(vv_server.url + "/")
    wait(browser, lambda b: by_id(b, "model").get_attribute("value") == "vv-cond")
    assert by_id(browser, "model-info").text.startswith(
        "visual-vae (Luhman & Luhman 2022): 8\u00d78\u00d73 images"
    )
    options = [o.text for o in Select(by_id(browser, "sample-label")).options]
    assert "3: cat" in options and "9: truck" in options
    Select(by_id(browser, "sample-label")).select_by_visible_text("3: cat")
    by_id(browser, "sample-go").click()
    wait(browser, lambda b: by_id(b, "sample-grid").get_attribute("data-stage") == "final")
    browser.find_elements(By.CSS_SELECTOR, "#sample-grid .tile")[0].click()
    shown = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#detail-params dd")]
    assert "3: cat" in shown
    Select(by_id(browser, "model")).select_by_value("vv-uncond")
    assert (
        by_id(browser, "model-info").text.startswith("visual-vae")
        and "unconditional" in by_id(browser, "model-info").text
    )
