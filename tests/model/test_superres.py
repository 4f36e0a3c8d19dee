"""Super-resolution VAEs: conditioned on a low-resolution image with per-image augmentation noise;
plain models unchanged; bad low-resolution inputs explained."""

from __future__ import annotations

import pytest
import torch

import model
from model import HParams, HParamsError
from model.lowres import downsample
from tests.factories import random_images


def differs(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fraction of values that differ."""
    return (a != b).float().mean().item()


def test_downsample_averages_each_patch_and_rounds():
    x = torch.tensor([[0, 1, 10, 20], [2, 3, 30, 40], [255, 255, 0, 0], [255, 254, 0, 1]], dtype=torch.uint8)
    low = downsample(x.view(1, 4, 4, 1), 2)
    # means 1.5, 25, 254.75, 0.25; round half to even
    assert low.view(2, 2).tolist() == [[2, 25], [255, 0]]
    with pytest.raises(ValueError, match="cannot average-pool 4x4 images to 3x3"):
        downsample(x.view(1, 4, 4, 1), 3)


def test_a_changed_low_res_input_changes_the_output(sr16):
    low = random_images(2, 16, 1, seed=1)
    other = low.clone()
    other[1] = 255 - other[1]
    a = sr16.sample(2, labels=[1, 2], low_res=low, seeds=[5, 6])
    b = sr16.sample(2, labels=[1, 2], low_res=other, seeds=[5, 6])
    assert torch.equal(a[0], b[0])  # image 0's input is the same
    assert differs(a[1], b[1]) > 0.3


def test_a_super_resolution_sample_forms_stage_by_stage_into_its_sample(sr16):
    low = random_images(2, 16, 1, seed=3)
    options = dict(labels=[4, 5], low_res=low, low_res_noise=0.1, seeds=[1, 2])
    stages = list(sr16.sample_stages(2, **options))
    assert stages[-1].final and torch.equal(stages[-1].images, sr16.sample(2, **options))
    assert [s.resolution for s in stages] == sorted({r for r in sr16.hp.layer_resolutions})
    other = list(sr16.sample_stages(2, **{**options, "low_res": 255 - low}))
    assert differs(stages[0].images, other[0].images) > 0.3  # the first preview already sees the input


def test_the_noise_level_changes_the_output_and_zero_noise_ignores_the_seed_for_it(sr16):
    low = random_images(1, 16, 1, seed=1)
    params = [
        sr16.decode([], n=1, temperature=0.0, low_res=low, low_res_noise=s, seeds=[7]) for s in (0, 0.3)
    ]
    assert (params[0] - params[1]).abs().max() > 1e-3
    # At temperature 0 and noise 0 nothing random is left before the output layer.
    again = sr16.decode([], n=1, temperature=0.0, low_res=low, low_res_noise=0.0, seeds=[8])
    assert torch.equal(params[0], again)


def test_same_seeds_give_the_same_images_whatever_the_batch(sr16):
    low = random_images(4, 16, 1, seed=2)
    guidance = torch.tensor([[0.0, 0.0], [2.0, 1.0], [0.0, 0.0], [1.0, 1.0]])
    batch = sr16.sample(
        4, labels=[0, 3, -1, 7], guidance=guidance, temperature=0.8, low_res=low,
        low_res_noise=[0.1, 0.15, 0.0, 0.1], seeds=[10, 11, 12, 13],
    )  # fmt: skip
    alone = sr16.sample(
        1, labels=[3], guidance=(2.0, 1.0), temperature=0.8, low_res=low[1:2], low_res_noise=0.15, seeds=[11]
    )
    assert (alone[0].int() - batch[1].int()).abs().max() <= 1
    # The augmentation noise is the image's own: a different seed gives a different image.
    assert (
        differs(sr16.sample(1, low_res=low[:1], seeds=[1]), sr16.sample(1, low_res=low[:1], seeds=[2])) > 0.3
    )


@pytest.mark.parametrize(
    ("low_res", "message"),
    [
        (
            random_images(2, 8, 1),
            r"low_res: expected uint8 images of shape \(2, 16, 16, 1\), got \(2, 8, 8, 1\)",
        ),
        (random_images(2, 16, 3), r"expected uint8 images of shape \(2, 16, 16, 1\), got \(2, 16, 16, 3\)"),
        (random_images(3, 16, 1), r"shape \(2, 16, 16, 1\), got \(3, 16, 16, 1\)"),
        (random_images(2, 16, 1).float(), "expected uint8 images, got torch.float32"),
        (None, r"needs low_res: uint8 images of shape \(2, 16, 16, 1\)"),
    ],
)
def test_a_bad_low_res_input_is_explained(sr16, low_res, message):
    with pytest.raises(ValueError, match=message):
        sr16.sample(2, low_res=low_res, seeds=0)


@pytest.mark.parametrize(
    ("noise", "message"), [(-0.1, ">= 0"), (float("nan"), "finite"), ([0.1] * 3, "3 values")]
)
def test_a_bad_noise_level_is_explained(sr16, noise, message):
    with pytest.raises(ValueError, match=message):
        sr16.sample(2, low_res=random_images(2, 16, 1), low_res_noise=noise, seeds=0)


def test_a_plain_model_refuses_a_low_res_input(tiny):
    with pytest.raises(ValueError, match="super-resolution"):
        tiny.sample(1, low_res=random_images(1, 16, 3), seeds=0)


def test_encode_and_reconstruct_pool_the_image_when_no_low_res_is_given(sr16):
    x = random_images(2, 32, 1, seed=3)
    low = downsample(x, 16)
    assert torch.equal(sr16.encode(x, seeds=0).kl, sr16.encode(x, seeds=0, low_res=low).kl)
    a = sr16.reconstruct(x, layers=2, seeds=0, labels=[1, 2])
    b = sr16.reconstruct(x, layers=2, seeds=0, labels=[1, 2], low_res=low)
    assert torch.equal(a.images, b.images)
    c = sr16.reconstruct(x, layers=2, seeds=0, labels=[1, 2], low_res=255 - low)
    assert differs(a.images, c.images) > 0.1


def test_the_training_elbo_draws_its_augmentation_noise_from_the_global_rng(sr16):
    x = random_images(2, 32, 1, seed=4)
    x_in, x_target = sr16.preprocess(x)
    eps = [torch.zeros(2, *s) for s in sr16.latent_shapes()]
    runs = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        with torch.no_grad():
            runs.append(sr16.elbo(x_in, x_target, noise=eps, low_res=downsample(x, 16))["elbo"])
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def test_a_plain_model_is_unchanged():
    with torch.device("meta"):
        plain = model.VDVAE(HParams.preset("tiny"))
    assert plain.low_res_encoder is None and not any(k.startswith("low_res") for k in plain.state_dict())


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"low_res": 32}, "must be smaller than image_size 32"),
        ({"low_res": 12}, "must be smaller than image_size 32 and divide it"),
        ({"low_res": 2}, "the decoder has no block at that resolution"),
        ({"low_res": 16, "low_res_noise": -1.0}, "low_res_noise must be finite and >= 0"),
    ],
)
def test_inconsistent_super_resolution_settings_are_explained(changes, message):
    with pytest.raises(HParamsError, match=message):
        HParams.preset("tiny").replace(**changes)


def test_low_res_features_reach_every_decoder_resolution_up_to_the_low_one():
    hp = HParams.preset("tiny").replace(low_res=16)
    assert hp.low_res_resolutions == [16, 8, 4, 1]
    with torch.device("meta"):
        vae = model.VDVAE(hp)
    assert len(vae.low_res_encoder.proj) == 4
