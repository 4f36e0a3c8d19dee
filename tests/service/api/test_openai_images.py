"""POST /v1/images/generations and GET /v1/models driven by the official `openai` SDK against a real
server that needs an API key: the images are /sample's for the same seeds and settings, byte for
byte; a stream sends `partial_images` previews per image, then each final image; a bad class, a
wrong size or a missing key raise the SDK's typed errors with our message; a client that leaves
stops the pass, and a deadline mid-stream is an error event the SDK raises."""

from __future__ import annotations

import time
from types import SimpleNamespace

import httpx
import openai
import pytest
from openai import OpenAI

from model.classes import ClassNames
from service.api.openai.routes import prompt_label
from service.api.openai.streams import spread
from service.errors import InvalidInput

from ..conftest import KEY_A, RunningServer, metric_value


@pytest.fixture(scope="module")
def sdk(keyed: RunningServer) -> OpenAI:
    return OpenAI(base_url=keyed.url + "/v1", api_key=KEY_A, max_retries=0, timeout=60)


def sampled(server: RunningServer, **body) -> list[str]:
    """The base64 PNGs /sample answers for `body`."""
    r = httpx.post(
        server.url + "/sample", json=body, headers={"Authorization": f"Bearer {KEY_A}"}, timeout=60
    )
    assert r.status_code == 200, r.text
    return [d["b64_json"] for d in r.json()["data"]]


def test_generate_gives_the_images_of_sample_byte_for_byte(sdk: OpenAI, keyed: RunningServer) -> None:
    r = sdk.images.generate(
        prompt="7", n=3, extra_body={"seed": 40, "temperature": 0.9, "guidance_scale": 1.0}
    )
    assert [d.b64_json for d in r.data] == sampled(
        keyed, n=3, seed=40, label=7, temperature=0.9, guidance={"mean": 1.0, "variance": 1.0}
    )
    assert r.size == "32x32" and r.output_format == "png" and r.background == "opaque"
    assert r.usage.total_tokens == 0  # a prompt names a class: there are no tokens
    assert [(d.seed, d.label) for d in r.data] == [(40, 7), (41, 7), (42, 7)]
    # An empty prompt is the model's label rule (mnist: image i gets label seed_i mod 10), as /sample.
    r = sdk.images.generate(prompt="", n=2, extra_body={"seed": 13})
    assert [d.b64_json for d in r.data] == sampled(keyed, n=2, seed=13)
    assert [d.label for d in r.data] == [3, 4]


def test_fields_without_effect_change_nothing_and_label_overrides_the_prompt(
    sdk: OpenAI, keyed: RunningServer
) -> None:
    plain = [d.b64_json for d in sdk.images.generate(prompt=" 5 ", extra_body={"seed": 2}).data]
    ignored = sdk.images.generate(
        prompt="5",
        model="mnist",
        size="auto",
        quality="high",
        style="vivid",
        moderation="low",
        user="someone",
        output_compression=50,
        background="opaque",
        output_format="png",
        response_format="b64_json",
        extra_body={"seed": 2},
    )
    assert [d.b64_json for d in ignored.data] == plain
    # `label` decides the class (null: the unconditional prior, which no prompt can ask for).
    r = sdk.images.generate(prompt="5", extra_body={"seed": 2, "label": None})
    assert r.data[0].label is None and [d.b64_json for d in r.data] == sampled(keyed, seed=2, label=None)


def test_a_stream_sends_partial_images_then_the_images(sdk: OpenAI, keyed: RunningServer) -> None:
    events = list(sdk.images.generate(prompt="6", n=2, stream=True, partial_images=2, extra_body={"seed": 7}))
    kinds = [(e.type, getattr(e, "partial_image_index", None), e.seed) for e in events]
    partial = "image_generation.partial_image"
    assert kinds == [
        (partial, 0, 7), (partial, 0, 8), (partial, 1, 7), (partial, 1, 8),
        ("image_generation.completed", None, 7), ("image_generation.completed", None, 8),
    ]  # fmt: skip
    final = [e.b64_json for e in events[-2:]]
    assert final == sampled(keyed, n=2, seed=7, label=6)
    assert all(e.b64_json not in final for e in events[:4])  # previews, not the images again
    assert events[-1].usage.total_tokens == 0 and events[-1].size == "32x32"
    # No partial images: only the images.
    events = list(sdk.images.generate(prompt="6", stream=True, partial_images=0, extra_body={"seed": 7}))
    assert [e.type for e in events] == ["image_generation.completed"] and events[0].b64_json == final[0]


def test_partial_images_are_spread_over_the_pass() -> None:
    assert spread(1, 4) == {2: 0}
    assert spread(2, 4) == {1: 0, 2: 1}
    assert spread(3, 4) == {1: 0, 2: 1, 3: 2}
    assert spread(3, 2) == {0: 0, 1: 1}  # a pass with fewer previews sends them all
    assert spread(0, 4) == {}


def test_a_prompt_that_names_no_class_is_a_bad_request_listing_the_classes(sdk: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        sdk.images.generate(prompt="a cat on a mat")
    assert e.value.status_code == 400 and e.value.code == "invalid_input" and e.value.param == "prompt"
    assert "names no class of model 'mnist'" in e.value.message and "0..9" in e.value.message
    with pytest.raises(openai.BadRequestError, match="no index 10"):
        sdk.images.generate(prompt="10")
    with pytest.raises(openai.BadRequestError, match="'tiny' is unconditional: send an empty prompt"):
        sdk.images.generate(prompt="3", model="tiny")


def test_a_prompt_names_a_class_by_name_in_any_case() -> None:
    """The class names of a model that has them (CIFAR-10's); served end to end in test_visual_vae."""
    cifar = SimpleNamespace(
        name="cifar",
        hp=SimpleNamespace(conditional=True, num_classes=10),
        vae=SimpleNamespace(classes=ClassNames.builtin("cifar10")),
    )
    assert [prompt_label(p, cifar) for p in ("cat", "CAT", " Airplane ", "7", "007")] == [3, 3, 0, 7, 7]
    with pytest.raises(InvalidInput) as e:
        prompt_label("dragon", cifar)
    assert "0 'airplane', 1 'automobile'" in e.value.detail and "9 'truck'" in e.value.detail


@pytest.mark.parametrize(
    ("kwargs", "param", "message"),
    [
        ({"size": "64x64"}, "size", "draws 32x32 images: send size '32x32' or 'auto'"),
        ({"size": "1024x1024"}, "size", "draws 32x32 images"),
        ({"response_format": "url"}, "response_format", "answers with the images themselves"),
        ({"output_format": "webp"}, "output_format", "PNG images only"),
        ({"background": "transparent"}, "background", "no alpha channel"),
        ({"n": 65}, "n", "limit of 64 images a request"),
        ({"extra_body": {"guidance_scale": 50}}, "guidance_scale", "above the limit 20"),
        ({"extra_body": {"frame_count": 4}}, "frame_count", "GIF output is not available"),
        ({"extra_body": {"tempreature": 1}}, "tempreature", "Extra inputs are not permitted"),
    ],
)
def test_bad_fields_are_bad_requests_naming_the_field(
    sdk: OpenAI, kwargs: dict, param: str, message: str
) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        sdk.images.generate(prompt="3", **kwargs)
    assert e.value.param == param and message in e.value.message, e.value.message


def test_an_unknown_model_is_not_found(sdk: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as e:
        sdk.images.generate(prompt="3", model="dall-e-3")
    assert e.value.code == "model_not_found" and "served models: mnist, tiny" in e.value.message
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("dall-e-3")


def test_a_missing_or_wrong_key_is_an_authentication_error(keyed: RunningServer) -> None:
    wrong = OpenAI(base_url=keyed.url + "/v1", api_key="not-a-key-0123456789", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        wrong.images.generate(prompt="3")
    assert e.value.code == "unauthorized" and "not valid" in e.value.message
    with pytest.raises(openai.AuthenticationError) as e:
        wrong.images.generate(prompt="3", extra_headers={"Authorization": openai.omit})
    assert "needs an API key" in e.value.message


def test_the_sdk_lists_and_retrieves_the_models(sdk: OpenAI) -> None:
    models = {m.id: m for m in sdk.models.list()}
    assert set(models) == {"mnist", "tiny"}
    assert models["mnist"].object == "model" and models["mnist"].owned_by == "vdvae-serve"
    assert 0 < models["mnist"].created <= time.time()
    mnist = sdk.models.retrieve("mnist")
    assert mnist.id == "mnist" and mnist.num_classes == 10  # our fields are kept beside OpenAI's


# A server whose model "tiny" is slow (conftest: slow)
# --------------------------------------------------------------------------------------------


def stage_counts(server: RunningServer) -> dict[str, float]:
    text = server.metrics()
    return {
        "dropped": metric_value(text, "vae_stream_stages_total", model="tiny", outcome="dropped"),
        "images": metric_value(text, "vae_images_total", model="tiny", operation="sample_stream"),
        "cancelled": metric_value(text, "vae_request_failures_total", reason="cancelled"),
    }


def test_a_client_that_leaves_a_stream_stops_the_pass(slow: RunningServer) -> None:
    before = stage_counts(slow)
    sdk = OpenAI(base_url=slow.url + "/v1", api_key="unused", max_retries=0)
    stream = sdk.images.generate(
        prompt="", model="tiny", stream=True, partial_images=3, extra_body={"seed": 3}
    )
    assert next(iter(stream)).type == "image_generation.partial_image"
    stream.close()
    deadline = time.monotonic() + 10
    while stage_counts(slow)["dropped"] == before["dropped"]:
        assert time.monotonic() < deadline, "the pass never noticed the client had gone"
        time.sleep(0.05)
    time.sleep(1.0)  # long enough for the rest of the pass, had it gone on
    after = stage_counts(slow)
    assert after["images"] == before["images"]  # the pass never reached its last layer
    assert after["cancelled"] == before["cancelled"] + 1


def test_a_deadline_missed_mid_stream_is_an_error_the_sdk_raises(slow: RunningServer) -> None:
    sdk = OpenAI(base_url=slow.url + "/v1", api_key="unused", max_retries=0)
    stream = sdk.images.generate(
        prompt="", model="tiny", stream=True, partial_images=3, extra_body={"seed": 1, "timeout_ms": 300}
    )
    with pytest.raises(openai.APIError, match="deadline") as e:
        list(stream)
    assert e.value.body["code"] == "deadline_exceeded"
