"""User-level sampling: per-image seeds, temperature, labels and classifier-free guidance."""

from __future__ import annotations

import copy
import shutil

import pytest
import torch

from model.inference import optimize_for_inference
from model.noise import draw_threads, set_draw_threads
from tests.factories import random_images
from tests.model.helpers import assert_same_image, pixels_off


def test_image_does_not_depend_on_its_batch(tiny):
    alone = tiny.sample(1, seeds=[1234])
    batch = tiny.sample(8, seeds=[7, 8, 9, 10, 11, 1234, 12, 13])
    assert_same_image(alone[0], batch[5])
    # ... and other images of the batch are different images.
    assert pixels_off(batch[4], batch[5])[1] > 0.5


def test_conditional_guided_image_does_not_depend_on_its_batch(tiny_cond):
    alone = tiny_cond.sample(1, labels=[3], guidance=(2.0, 1.0), temperature=0.8, seeds=[99])
    labels = [0, 1, 2, 4, 5, 3, 6, 7]
    guidance = torch.tensor([[0.0, 0.0]] * 5 + [[2.0, 1.0]] + [[1.0, 3.0]] * 2)
    batch = tiny_cond.sample(
        8, labels=labels, guidance=guidance, temperature=0.8, seeds=[1, 2, 3, 4, 5, 99, 6, 7]
    )
    assert_same_image(alone[0], batch[5])


def test_int_seed_means_consecutive_seeds(tiny):
    a = tiny.sample(3, seeds=40)
    b = tiny.sample(1, seeds=[42])
    assert_same_image(a[2], b[0])


def test_same_seed_same_image_different_seed_different_image(tiny):
    a, b, c = tiny.sample(1, seeds=[5]), tiny.sample(1, seeds=[5]), tiny.sample(1, seeds=[6])
    assert torch.equal(a, b)
    assert pixels_off(a, c)[1] > 0.5


def test_per_image_temperature_rows_match_separate_calls(tiny):
    L = tiny.hp.num_layers
    temps = torch.tensor([[0.3] * L, [1.0] * L, [0.0] * L])
    batch = tiny.sample(3, temperature=temps, seeds=[1, 2, 3])
    for i, t in enumerate([0.3, 1.0, 0.0]):
        assert_same_image(batch[i], tiny.sample(1, temperature=t, seeds=[i + 1])[0])


def test_temperature_zero_makes_the_latents_deterministic(tiny):
    # With t = 0 every z is the prior mean: two seeds differ only through the pixel noise, so the
    # output-layer parameters are identical.
    a = tiny.decode([], n=1, temperature=0.0, seeds=[1])
    b = tiny.decode([], n=1, temperature=0.0, seeds=[2])
    assert torch.equal(a, b)


def test_temperature_per_layer_list(tiny):
    L = tiny.hp.num_layers
    a = tiny.sample(1, temperature=[0.5] * L, seeds=[3])
    b = tiny.sample(1, temperature=0.5, seeds=[3])
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    ("temperature", "message"),
    [([0.5] * 12, "12 values but the model has 13 latent layers"), (-0.1, ">= 0"), (float("nan"), "finite")],
)
def test_bad_temperature_is_explained(tiny, temperature, message):
    with pytest.raises(ValueError, match=message):
        tiny.sample(1, temperature=temperature, seeds=0)


def test_guidance_is_finite_at_weight_20(tiny_cond):
    labels = list(range(10))
    params = tiny_cond.decode([], n=10, labels=labels, guidance=(20.0, 20.0), temperature=1.0, seeds=0)
    assert torch.isfinite(params).all()
    images = tiny_cond.sample(10, labels=labels, guidance=(20.0, 20.0), seeds=0)
    assert images.dtype == torch.uint8 and images.shape == (10, 32, 32, 1)


def test_guidance_weight_zero_is_plain_conditional_sampling(tiny_cond):
    a = tiny_cond.sample(4, labels=[1, 2, 3, 4], guidance=(0.0, 0.0), seeds=0)
    b = tiny_cond.sample(4, labels=[1, 2, 3, 4], seeds=0)
    assert torch.equal(a, b)


def test_guidance_changes_the_sample(tiny_cond):
    a = tiny_cond.decode([], n=2, labels=[1, 2], seeds=0)
    b = tiny_cond.decode([], n=2, labels=[1, 2], guidance=(3.0, 3.0), seeds=0)
    assert (a - b).abs().max() > 1e-3


def test_labels_change_the_sample(tiny_cond):
    a = tiny_cond.decode([], n=1, labels=[1], seeds=0)
    b = tiny_cond.decode([], n=1, labels=[2], seeds=0)
    assert (a - b).abs().max() > 1e-3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"labels": [10]}, "label 10 out of range"),
        ({"labels": [-2]}, "label -2 out of range"),
        ({"labels": [1, 2]}, "2 labels for 1 images"),
        ({"labels": [1], "guidance": (float("inf"), 1.0)}, "finite"),
        ({"labels": [1], "guidance": (1.0, 2.0, 3.0)}, r"guidance must be \(w_mean, w_var\)"),
    ],
)
def test_bad_labels_or_guidance_are_explained(tiny_cond, kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_cond.sample(1, seeds=0, **kwargs)


def test_unconditional_model_refuses_labels_and_guidance(tiny):
    with pytest.raises(ValueError, match="unconditional"):
        tiny.sample(1, labels=[1], seeds=0)
    with pytest.raises(ValueError, match="class-conditional"):
        tiny.sample(1, guidance=(1.0, 1.0), seeds=0)


def test_decoding_from_given_latents_per_image_depth(tiny):
    x = random_images(3)
    z = tiny.encode(x, seeds=5).z
    batch = tiny.sample(3, latents=z[:4], latent_layers=[0, 2, 4], seeds=[9, 10, 11])
    for i, k in enumerate([0, 2, 4]):
        alone = tiny.sample(1, latents=[t[i : i + 1] for t in z[:k]], seeds=[9 + i])
        assert_same_image(batch[i], alone[0])


def test_bad_latents_are_explained(tiny):
    with pytest.raises(ValueError, match=r"latent layer 0: expected shape \(1 or 1, 8, 1, 1\)"):
        tiny.sample(1, latents=[torch.zeros(1, 8, 2, 2)], seeds=0)
    with pytest.raises(ValueError, match="14 latent layers but the model has 13"):
        tiny.sample(1, latents=[torch.zeros(1, 8, r, r) for r in [*tiny.hp.layer_resolutions, 32]], seeds=0)


def test_no_call_modifies_the_weights(tiny_cond):
    # The inference path works in place on its own activations; it must never touch parameters
    # (a batch of one sees bias_xs without a copy).
    before = {k: v.clone() for k, v in tiny_cond.state_dict().items()}
    x = random_images(3, channels=1)
    for n in (1, 3):
        tiny_cond.sample(n, labels=[1] * n, guidance=(2.0, 2.0), seeds=0)
        tiny_cond.sample(n, seeds=0)
        tiny_cond.reconstruct(x[:n], layers=3, seeds=0)
        tiny_cond.encode(x[:n], seeds=0)
        tiny_cond.sample(n, latents=tiny_cond.encode(x[:n], seeds=0).z[:2], seeds=0)
    for k, v in tiny_cond.state_dict().items():
        assert torch.equal(v, before[k]), k


COMPILE_ON_CPU = pytest.param(
    {"compile": True},
    marks=[
        pytest.mark.skipif(shutil.which("g++") is None, reason="torch.compile on CPU needs a C++ compiler"),
        # Inductor's imports still touch torch.jit.script_method, which warns.
        pytest.mark.filterwarnings("ignore:.*torch.jit.script_method.*:DeprecationWarning"),
    ],
    id="compiled",
)


CHANNELS_LAST = pytest.param({"channels_last": True}, id="channels-last")


@pytest.mark.parametrize("options", [CHANNELS_LAST, COMPILE_ON_CPU])
def test_optimized_inference_gives_the_same_images(tiny_cond, options):
    fast = optimize_for_inference(copy.deepcopy(tiny_cond), **options)
    labels, guidance = [0, 3, -1, 7], torch.tensor([[0.0, 0.0], [2.0, 1.0], [0.0, 0.0], [1.0, 1.0]])
    a = tiny_cond.sample(4, labels=labels, guidance=guidance, temperature=0.8, seeds=0)
    b = fast.sample(4, labels=labels, guidance=guidance, temperature=0.8, seeds=0)
    assert_same_image(a, b)
    assert torch.equal(b, fast.sample(4, labels=labels, guidance=guidance, temperature=0.8, seeds=0))
    x = random_images(2, channels=1)
    assert torch.allclose(tiny_cond.encode(x, seeds=0).kl, fast.encode(x, seeds=0).kl, rtol=1e-4, atol=1e-4)


def test_none_inside_a_label_list_is_unconditional(tiny_cond):
    assert torch.equal(
        tiny_cond.sample(2, labels=[3, None], seeds=0), tiny_cond.sample(2, labels=[3, -1], seeds=0)
    )


def test_draws_on_several_host_threads_are_the_same_draws(tiny_cond):
    alone = tiny_cond.sample(5, seeds=[3, 1, 4, 1, 5])
    set_draw_threads(3)
    try:
        assert draw_threads() == 3
        assert torch.equal(tiny_cond.sample(5, seeds=[3, 1, 4, 1, 5]), alone)
    finally:
        set_draw_threads(1)
    with pytest.raises(ValueError, match="draw threads must be >= 1"):
        set_draw_threads(0)
