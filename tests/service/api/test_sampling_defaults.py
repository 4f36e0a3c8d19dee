"""Sampling defaults over HTTP: /v1/models shows them, /sample, /sample/stream and /decode use
them for what a request leaves out, a class-conditional model draws each image's label from its seed
and says which, and an explicit `"label": null` still reaches the unconditional prior."""

from __future__ import annotations

import base64
import io
import json

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from model.training.evaluation.judge import BUNDLED_JUDGE, load_judge

from ..conftest import BUNDLED_EXISTS, digit_like, png_bytes


def sampling(client: httpx.Client, name: str = "mnist") -> dict:
    return client.get(f"/v1/models/{name}").json()["sampling"]


def explicit(defaults: dict) -> dict:
    """The request fields that spell out the defaults (temperature and guidance)."""
    return {"temperature": defaults["temperature"], "guidance": defaults["guidance"]}


def images(r: httpx.Response) -> list[str]:
    assert r.status_code == 200, r.text
    return [d["b64_json"] for d in r.json()["data"]]


def test_models_show_their_sampling_defaults(client: httpx.Client) -> None:
    mnist = sampling(client)
    assert set(mnist) == {"temperature", "guidance", "label", "chosen_by"}
    assert mnist["label"] == "seed" and mnist["chosen_by"]
    assert sampling(client, "tiny") == {
        "temperature": 1.0,
        "guidance": None,
        "label": "null",
        "chosen_by": "not tuned: the prior as trained (temperature 1, no guidance)",
    }


def test_a_request_without_label_gets_each_images_label_from_its_seed(client: httpx.Client) -> None:
    r = client.post("/sample", json={"n": 12, "seed": 25})
    assert [d["label"] for d in r.json()["data"]] == [(25 + i) % 10 for i in range(12)]
    # the same images as asking for those labels with the defaults spelled out
    spelled = explicit(sampling(client))
    for i, label in ((0, 5), (7, 2)):
        one = client.post("/sample", json={"n": 1, "seed": 25 + i, "label": label, **spelled})
        assert images(one)[0] == images(r)[i] and one.json()["data"][0]["label"] == label


def test_default_labels_are_reproducible_and_independent_of_the_batch(client: httpx.Client) -> None:
    batch = client.post("/sample", json={"n": 6, "seed": 300}).json()["data"]
    again = client.post("/sample", json={"n": 6, "seed": 300}).json()["data"]
    assert again == batch
    for i in (0, 3, 5):
        alone = client.post("/sample", json={"n": 1, "seed": 300 + i}).json()["data"][0]
        assert alone == batch[i]
    shifted = client.post("/sample", json={"n": 4, "seed": 302}).json()["data"]
    assert shifted == batch[2:6]


def test_an_explicit_null_label_is_the_unconditional_prior(client: httpx.Client) -> None:
    defaults = sampling(client)
    null = client.post("/sample", json={"n": 3, "seed": 40, "label": None})
    assert [d["label"] for d in null.json()["data"]] == [None] * 3
    assert images(null) != images(client.post("/sample", json={"n": 3, "seed": 40}))
    # the default temperature still applies; guidance has no label to steer towards
    same = client.post(
        "/sample", json={"n": 3, "seed": 40, "label": None, "temperature": defaults["temperature"]}
    )
    assert images(same) == images(null)
    # an explicit null guidance: plain conditional sampling with the seed's label
    plain = client.post("/sample", json={"n": 1, "seed": 41, "guidance": None})
    assert plain.json()["data"][0]["label"] == 1
    spelled = {"n": 1, "seed": 41, "label": 1, "temperature": defaults["temperature"], "guidance": None}
    assert images(plain) == images(client.post("/sample", json=spelled))
    if defaults["guidance"]:  # the defaults guide: turning that off changes the image
        assert images(plain) != images(client.post("/sample", json={"n": 1, "seed": 41}))


def test_png_answers_carry_the_labels_in_a_header(client: httpx.Client) -> None:
    r = client.post("/sample", json={"n": 4, "seed": 8}, headers={"Accept": "image/png"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.headers["x-labels"] == "8,9,0,1" and r.headers["x-seeds"] == "8,9,10,11"
    r = client.post("/sample", json={"n": 2, "seed": 8, "label": None}, headers={"Accept": "image/png"})
    assert r.headers["x-labels"] == "null,null"
    r = client.post("/sample", json={"n": 1, "seed": 3, "model": "tiny"}, headers={"Accept": "image/png"})
    assert r.headers["x-labels"] == "null"  # an unconditional model


def test_decode_uses_the_same_defaults(client: httpx.Client) -> None:
    png64 = base64.b64encode(png_bytes(digit_like())).decode()
    enc = client.post("/encode", json={"image_b64": png64, "latents": 2, "seed": 0}).json()
    r = client.post("/decode", json={"latents": enc["latents"], "seed": 13})
    assert r.json()["data"][0]["label"] == 3
    spelled = {"latents": enc["latents"], "seed": 13, "label": 3, **explicit(sampling(client))}
    assert images(client.post("/decode", json=spelled)) == images(r)
    null = client.post("/decode", json={"latents": enc["latents"], "seed": 13, "label": None})
    assert null.json()["data"][0]["label"] is None


def final_event(r: httpx.Response) -> dict:
    """The data of a /sample/stream answer's `final` event."""
    assert r.status_code == 200, r.text
    block = r.text.strip().split("\n\n")[-1]
    fields = dict(line.split(": ", 1) for line in block.splitlines())
    assert fields["event"] == "final", block
    return json.loads(fields["data"])


def test_the_stream_uses_the_same_defaults_and_reports_the_labels(client: httpx.Client) -> None:
    r = client.post("/sample/stream", json={"n": 4, "seed": 16})
    assert r.headers["x-labels"] == "6,7,8,9" and r.headers["x-seeds"] == "16,17,18,19"
    final = final_event(r)["data"]
    assert [d["label"] for d in final] == [6, 7, 8, 9]
    sampled = client.post("/sample", json={"n": 4, "seed": 16}).json()["data"]
    assert [(d["b64_json"], d["label"]) for d in final] == [(d["b64_json"], d["label"]) for d in sampled]
    null = client.post("/sample/stream", json={"n": 2, "seed": 16, "label": None})
    assert null.headers["x-labels"] == "null,null"
    assert [d["label"] for d in final_event(null)["data"]] == [None, None]
    assert images(client.post("/sample", json={"n": 2, "seed": 16, "label": None})) == [
        d["b64_json"] for d in final_event(null)["data"]
    ]


@pytest.mark.skipif(not BUNDLED_EXISTS, reason="needs the bundled model")
def test_the_defaults_give_digits_the_judge_recognises(client: httpx.Client) -> None:
    """What a newcomer's first request returns: the judge reads most images as their label."""
    data = client.post("/sample", json={"n": 50, "seed": 1000}).json()["data"]
    pixels = [np.asarray(Image.open(io.BytesIO(base64.b64decode(d["b64_json"])))) for d in data]
    judge, _ = load_judge(BUNDLED_JUDGE)
    _, probs = judge.embed(torch.from_numpy(np.stack(pixels)[..., None]))
    labels = torch.tensor([d["label"] for d in data])
    assert (probs.argmax(dim=1) == labels).double().mean() >= 0.8
