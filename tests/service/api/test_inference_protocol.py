"""The Open Inference Protocol driven by `tritonclient[http]` against a real server: metadata and
readiness, sampling with binary and JSON tensors (the images of /sample and of OpenAI's route for the
same seeds and settings), encode then decode (the latents and images of /encode and /decode), errors
as the protocol's `{"error"}` that the client raises, and requests of all three APIs in shared passes."""

from __future__ import annotations

import asyncio
import base64
import io

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from openai import OpenAI
from PIL import Image
from tritonclient.utils import InferenceServerException

from service.wire import tensor_from_b64

from ..conftest import RunningServer, digit_like, metric_value, png_bytes, run_async


@pytest.fixture(scope="module")
def v2(server: RunningServer) -> triton.InferenceServerClient:
    client = triton.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=60)
    yield client
    client.close()


def tensor(name: str, array: np.ndarray, binary: bool = True) -> triton.InferInput:
    dtype = {"int64": "INT64", "float32": "FP32", "uint8": "UINT8", "object": "BYTES"}[array.dtype.name]
    t = triton.InferInput(name, list(array.shape), dtype)
    t.set_data_from_numpy(array, binary_data=binary)
    return t


def pngs(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.stack([decoded(d["b64_json"]) for d in response.json()["data"]])


def decoded(b64: str) -> np.ndarray:
    image = np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))
    return image[..., None] if image.ndim == 2 else image


def test_server_and_model_metadata_and_readiness(
    v2: triton.InferenceServerClient, client: httpx.Client
) -> None:
    assert v2.is_server_live() and v2.is_server_ready()
    assert v2.get_server_metadata() == {
        "name": "vdvae-serve",
        "version": "0.1.0",
        "extensions": ["binary_tensor_data"],
    }
    for name in ("mnist", "mnist.encode", "mnist.decode", "tiny", "tiny.encode", "tiny.decode"):
        assert v2.is_model_ready(name), name
    assert not v2.is_model_ready("nope")
    meta = v2.get_model_metadata("mnist")
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["outputs"]] == [
        ("images", "UINT8", [-1, 32, 32, 1]), ("seed", "INT64", [-1]), ("label", "INT64", [-1]),
    ]  # fmt: skip
    assert [t["name"] for t in meta["inputs"]] == ["seed", "label", "temperature", "guidance"]
    assert meta["parameters"] == {"operation": "sample", "model": "mnist", "family": "vdvae"}
    layers = client.get("/v1/models/mnist").json()["latent_shapes"]
    encode = v2.get_model_metadata("mnist.encode")
    assert [t["shape"][1:] for t in encode["outputs"] if t["name"].startswith("z_")] == layers
    assert [t["name"] for t in v2.get_model_metadata("tiny")["inputs"]] == ["seed", "temperature"]
    with pytest.raises(
        InferenceServerException, match=r"no model named 'nope' here; served: mnist, mnist\.decode"
    ):
        v2.get_model_metadata("nope")
    assert client.get("/v2/health/live").content == b""  # the protocol's: the status is the answer


def test_infer_gives_the_images_of_sample_and_of_openais_route(
    v2: triton.InferenceServerClient, server: RunningServer, client: httpx.Client
) -> None:
    options = {"temperature": 0.9, "guidance": {"mean": 1.0, "variance": 0.5}}
    sample = pngs(client.post("/sample", json={"n": 3, "seed": 40, "label": 7, **options}))
    arrays = {
        "seed": np.array([40, 41, 42]),
        "label": np.array([7]),  # one row: every image's
        "temperature": np.array([0.9], dtype=np.float32),
        "guidance": np.array([[1.0, 0.5]], dtype=np.float32),
    }
    binary = v2.infer("mnist", [tensor(name, a) for name, a in arrays.items()])
    assert binary.get_response()["outputs"][0]["parameters"]["binary_data_size"] == sample.size
    assert np.array_equal(binary.as_numpy("images"), sample)
    assert binary.as_numpy("seed").tolist() == [40, 41, 42] and binary.as_numpy("label").tolist() == [7, 7, 7]
    as_json = [tensor(name, a, binary=False) for name, a in arrays.items()]
    plain = v2.infer("mnist", as_json, outputs=[triton.InferRequestedOutput("images", binary_data=False)])
    assert "data" in plain.get_response()["outputs"][0] and np.array_equal(plain.as_numpy("images"), sample)
    sdk = OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    openai = sdk.images.generate(
        prompt="7", n=3, extra_body={"seed": 40, "temperature": 0.9, "guidance_scale": options["guidance"]}
    )
    assert np.array_equal(np.stack([decoded(d.b64_json) for d in openai.data]), sample)


def test_a_first_seed_counts_up_and_left_out_options_are_the_models_defaults(
    v2: triton.InferenceServerClient, client: httpx.Client
) -> None:
    """seed [s] gives image i the seed s + i, as /sample; labels left out follow the label rule."""
    result = v2.infer(
        "mnist", [tensor("seed", np.array([13])), tensor("temperature", np.ones(2, np.float32))]
    )
    assert np.array_equal(result.as_numpy("images"), pngs(client.post("/sample", json={"n": 2, "seed": 13})))
    assert result.as_numpy("label").tolist() == [3, 4]
    # -1 is the unconditional prior (label null); a label may be a name (BYTES): mnist's are numbers.
    labels = v2.infer("mnist", [tensor("seed", np.array([5, 6])), tensor("label", np.array([-1, 2]))])
    unconditional = pngs(client.post("/sample", json={"seed": 5, "label": None}))
    assert np.array_equal(labels.as_numpy("images")[:1], unconditional)
    named = v2.infer(
        "mnist", [tensor("seed", np.array([6])), tensor("label", np.array([b"2"], dtype=object))]
    )
    assert np.array_equal(named.as_numpy("images")[0], labels.as_numpy("images")[1])


def test_encode_then_decode_round_trip(v2: triton.InferenceServerClient, client: httpx.Client) -> None:
    digits = np.stack([digit_like(seed=s) for s in range(2)])
    k = 3
    encoded = v2.infer(
        "mnist.encode",
        [tensor("image", digits), tensor("seed", np.array([5, 6])), tensor("label", np.array([0, 1]))],
        outputs=[triton.InferRequestedOutput(f"z_{i}") for i in range(k)]
        + [triton.InferRequestedOutput("kl_bits")],
    )
    zs = [encoded.as_numpy(f"z_{i}") for i in range(k)]
    for b in range(2):  # the latents /encode gives for the same image, seed and label
        body = client.post(
            "/encode",
            files={"image": ("d.png", png_bytes(digits[b]))},
            data={"latents": str(k), "seed": str(5 + b), "label": str(b)},
        ).json()
        # The same numbers up to float rounding: the kernels of a batch of 2 and of 1 round differently.
        for i, z in enumerate(body["latents"]):
            assert np.allclose(tensor_from_b64(z["data"], z["shape"]), zs[i][b], rtol=1e-4, atol=1e-5)
        assert np.allclose(encoded.as_numpy("kl_bits")[b], body["kl_bits"], rtol=1e-4, atol=1e-5)
    decoded_v2 = v2.infer(
        "mnist.decode", [tensor(f"z_{i}", z) for i, z in enumerate(zs)] + [tensor("seed", np.array([9]))]
    )
    latents = [
        {"layer": i, "shape": list(z.shape[1:]), "data": base64.b64encode(z[0].tobytes()).decode()}
        for i, z in enumerate(zs)
    ]
    http = pngs(client.post("/decode", json={"latents": latents, "seed": 9}))
    off = np.abs(decoded_v2.as_numpy("images")[:1].astype(int) - http)
    assert off.max() <= 1 and (off > 0).mean() <= 1e-3  # a level, in a few pixels at most: as above
    assert decoded_v2.as_numpy("seed").tolist() == [9, 10]


@pytest.mark.parametrize(
    ("model", "inputs", "message"),
    [
        ("mnist", [("label", np.array([12]))], "inputs.label: image 0: label 12 is out of range"),
        (
            "mnist",
            [("colour", np.array([1]))],
            "model 'mnist' has no input 'colour'; its inputs: seed, label",
        ),
        ("mnist", [("seed", np.array([1, 2])), ("label", np.array([1, 2, 3]))], "different numbers of rows"),
        ("mnist", [("guidance", np.array([1.0], np.float32))], "guidance has shape [1]; it takes [n, 2]"),
        ("mnist", [("temperature", np.array([9.0], np.float32))], "temperature 9 is out of range [0, 2]"),
        ("mnist", [("seed", np.arange(65))], "images=65 is above this service's limit of 64"),
        ("mnist", [("seed", np.array([-3]))], "seeds are 0..9223372036854775807, got -3"),
        ("mnist.encode", [("image", np.zeros((1, 32, 32, 1), np.uint8)), ("seed", np.array([-1]))], "got -1"),
        ("mnist", [("seed", np.zeros(0, np.int64))], "a request draws at least one image"),
        ("tiny", [("label", np.array([1]))], "model 'tiny' is unconditional"),
        ("mnist.encode", [("seed", np.array([1]))], "encodes the input `image`: UINT8 [1, 32, 32, 1]"),
        ("mnist.encode", [("image", np.zeros((1, 28, 28, 1), np.uint8))], "image is UINT8 [1, 32, 32, 1]"),
        ("mnist.decode", [("z_1", np.zeros((1, 8, 1, 1), np.float32))], "decodes its top latent layers"),
        ("mnist.decode", [("z_0", np.zeros((1, 8, 2, 2), np.float32))], "z_0 has shape [1, 8, 2, 2]"),
        ("mnist.decode", [("z_0", np.full((1, 8, 1, 1), np.nan, np.float32))], "must be finite"),
    ],
)
def test_bad_requests_are_400s_the_client_raises_with_the_reason(
    v2: triton.InferenceServerClient, model: str, inputs: list, message: str
) -> None:
    for binary in (True, False):
        with pytest.raises(InferenceServerException) as e:
            v2.infer(model, [tensor(name, array, binary) for name, array in inputs])
        assert e.value.status() == "400" and message in e.value.message(), e.value.message()


def test_unknown_models_outputs_and_malformed_bodies(
    v2: triton.InferenceServerClient, client: httpx.Client
) -> None:
    with pytest.raises(InferenceServerException, match="no model named 'dall-e'") as e:
        v2.infer("dall-e", [tensor("seed", np.array([1]))])
    assert e.value.status() == "404"
    with pytest.raises(InferenceServerException, match="has no output 'logits'"):
        v2.infer("mnist", [tensor("seed", np.array([1]))], outputs=[triton.InferRequestedOutput("logits")])
    seed = b'{"inputs": [{"name": "seed", "shape": [1], "datatype": "INT64", "data": [1]}]}'
    binary = seed.replace(b'"data": [1]', b'"parameters": {"binary_data_size": 8}')
    for body, headers, message in [
        (seed.replace(b"[1]}", b"[1, 2]}"), {}, "shape [1] holds 1 values, data has 2"),
        (binary + b"abc", {"Inference-Header-Content-Length": str(len(binary) + 4)}, "not a length within"),
        (
            binary + b"abc",
            {"Inference-Header-Content-Length": str(len(binary))},
            "binary_data_size 8 is not within",
        ),
        (
            seed + b"xyz",
            {"Inference-Header-Content-Length": str(len(seed))},
            "3 bytes of binary data that no input",
        ),
        (b'{"inputs": [], "priority": 1}', {}, "priority: Extra inputs are not permitted"),
        (seed.replace(b"[1]}", b"[1.5]}"), {}, "INT64 data are integers"),
    ]:
        r = client.post("/v2/models/mnist/infer", content=body, headers=headers)
        assert r.status_code == 400 and message in r.json()["error"], (body, r.text)


def test_a_deadline_given_as_the_protocols_timeout(v2: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException, match="deadline") as e:
        v2.infer("mnist", [tensor("seed", np.arange(64))], timeout=1)  # microseconds
    assert e.value.status() == "504"


def test_requests_of_all_three_apis_share_passes(server: RunningServer) -> None:
    def passes() -> float:
        return metric_value(server.metrics(), "vae_batch_size_count", model="mnist", operation="sample")

    async def all_at_once() -> list[httpx.Response]:
        infer = {"inputs": [{"name": "seed", "shape": [1], "datatype": "INT64", "data": [0]}]}
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as c:
            return await asyncio.gather(
                *(c.post("/sample", json={"seed": s}) for s in range(2)),
                *(c.post("/v1/images/generations", json={"prompt": "", "seed": s}) for s in range(2)),
                *(c.post("/v2/models/mnist/infer", json=infer) for _ in range(2)),
            )

    before = passes()
    assert [r.status_code for r in run_async(all_at_once())] == [200] * 6
    assert passes() - before < 6, "6 concurrent requests ran in 6 passes: nothing was batched"
