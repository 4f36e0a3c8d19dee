"""The visual-vae family behind the calls both families share: per-image seeds and batch
independence, guidance, partial reconstruction, progressive stages, interpolation, the
super-resolution input, and the numerically stable variance."""

from __future__ import annotations

import pytest
import torch

import model
from model.visual_vae.decoder import smoothed_log_std
from tests.factories import random_images, visual_vae


@pytest.fixture(scope="module")
def uncond():
    return visual_vae("uncond16")


@pytest.fixture(scope="module")
def cond():
    return visual_vae("cond8", seed=1)


@pytest.fixture(scope="module")
def sr():
    return visual_vae("sr8to16", seed=2)


def test_an_image_depends_on_its_seed_and_options_only(cond):
    alone = cond.sample(1, labels=[3], guidance=(2.0, 4.0), temperature=0.8, seeds=[11])
    batch = cond.sample(
        4, labels=[3, 1, None, 7], guidance=torch.tensor([[2.0, 4.0], [0, 0], [1, 1], [3, 0]]),
        temperature=torch.tensor([[0.8] * 5, [1.0] * 5, [0.5] * 5, [0.9] * 5]), seeds=[11, 12, 13, 14],
    )  # fmt: skip
    assert torch.equal(alone[0], batch[0])
    assert not torch.equal(batch[0], batch[1])


def test_defaults_are_their_evaluate_py(cond, uncond, sr):
    assert cond.sampling.guidance == (2.0, 4.0) and cond.sampling.label == "seed"
    assert sr.sampling.guidance == (1.0, 1.0)
    assert uncond.sampling.guidance is None and uncond.sampling.label == "null"
    # Left out, labels come from the seeds and guidance is their (2, 4).
    assert torch.equal(
        cond.sample(2, seeds=[5, 6]), cond.sample(2, labels=[5, 6], guidance=(2.0, 4.0), seeds=[5, 6])
    )


@pytest.mark.parametrize("w", [(0.0, 0.0), (20.0, 20.0), (20.0, 0.0), (0.0, 20.0)])
def test_guidance_at_the_limits_stays_finite(cond, w):
    params = cond.decode([], n=3, labels=[0, 4, 9], guidance=w, seeds=[1, 2, 3])
    assert torch.isfinite(params).all()


def test_unconditional_models_take_no_labels_or_guidance(uncond):
    with pytest.raises(ValueError, match="unconditional"):
        uncond.sample(1, labels=[1], seeds=[0])
    with pytest.raises(ValueError, match="guidance needs a class-conditional model"):
        uncond.sample(1, guidance=(1.0, 1.0), seeds=[0])


def test_reconstruction_depth_and_bits(uncond):
    x = random_images(2, size=16)
    full = uncond.reconstruct(x, layers=uncond.hp.num_layers, seeds=[1, 2])
    none = uncond.reconstruct(x, layers=0, seeds=[1, 2])
    assert torch.equal(none.images, uncond.sample(2, seeds=[1, 2]))
    assert (none.bits == 0).all() and (full.bits > 0).all()
    mixed = uncond.reconstruct(x, layers=[0, uncond.hp.num_layers], seeds=[1, 2])
    assert torch.equal(mixed.images[0], none.images[0]) and torch.equal(mixed.images[1], full.images[1])


def test_encode_then_decode_is_the_full_reconstruction(cond):
    x = random_images(2, size=8)
    enc = cond.encode(x, labels=[1, 2], seeds=[3, 4])
    assert [tuple(z.shape[1:]) for z in enc.z] == cond.latent_shapes()
    params = cond.decode(enc.z, labels=[1, 2])
    rec = cond.reconstruct(x, layers=cond.hp.num_layers, labels=[1, 2], seeds=[3, 4])
    assert torch.equal(cond.params_to_images(params), rec.images)
    assert enc.bits_per_dim.shape == (2,) and torch.isfinite(enc.bits_per_dim).all()


def test_the_stream_ends_in_the_samples(cond):
    stages = list(cond.sample_stages(3, labels=[1, 2, None], seeds=[7, 8, 9]))
    assert [s.resolution for s in stages] == [1, 4, 8] and stages[-1].final
    assert torch.equal(stages[-1].images, cond.sample(3, labels=[1, 2, None], seeds=[7, 8, 9]))


def test_interpolation_ends_are_the_endpoints(uncond):
    path = uncond.interpolate(3, 4, steps=4, seed=0)
    assert torch.equal(path[0], uncond.sample(1, seeds=[3])[0])
    assert torch.equal(path[-1], uncond.sample(1, seeds=[4])[0])


def test_super_resolution_takes_uint8_or_raw_floats_and_leaves_them_untouched(sr):
    low = random_images(2, size=8)
    as_float = low.float() / 127.5 - 1.0
    before = as_float.clone()
    a = sr.sample(2, labels=[1, 2], seeds=[1, 2], low_res=low)
    b = sr.sample(2, labels=[1, 2], seeds=[1, 2], low_res=as_float)
    assert torch.equal(a, b) and torch.equal(as_float, before)  # their code adds the noise in place
    quiet = sr.sample(2, labels=[1, 2], seeds=[1, 2], low_res=low, low_res_noise=0.0)
    assert not torch.equal(a, quiet)  # the default c_aug noise is drawn from each image's seed
    assert sr.hp.low_res_noise == 0.15  # their rule: 0.1 only for a 64x64 model


def test_super_resolution_input_errors(sr, uncond):
    with pytest.raises(ValueError, match=r"expected images of shape \(2, 8, 8, 3\).*upscales 8x8 to 16x16"):
        sr.sample(2, labels=[1, 2], seeds=[1, 2], low_res=random_images(2, size=16))
    with pytest.raises(ValueError, match="needs low_res"):
        sr.sample(1, labels=[1], seeds=[1])
    with pytest.raises(ValueError, match="not one"):
        uncond.sample(1, seeds=[1], low_res=random_images(1, size=8))


def test_super_resolution_reconstructs_from_the_image_pooled(sr):
    x = random_images(2, size=16)
    rec = sr.reconstruct(x, layers=2, labels=[1, 2], seeds=[5, 6])
    assert rec.images.shape == (2, 16, 16, 3) and (rec.bits > 0).all()


def test_smoothed_variance_is_theirs_and_finite_everywhere():
    v = torch.linspace(-30, 60, 91)
    exact = torch.log1p(torch.exp(0.693 * v.double())) / 0.693  # their formula, without rounding
    assert torch.allclose((2 * smoothed_log_std(v)).exp().double(), exact, rtol=1e-5)
    theirs = torch.log(1 + torch.exp(0.693 * v)) / 0.693  # float32: quantised, then 0, for small variances
    assert torch.allclose(theirs[v > -5].double(), exact[v > -5], rtol=1e-5) and (theirs[v < -25] == 0).all()
    extreme = torch.tensor([-1e4, -300.0, 300.0, 1e4])
    assert torch.isfinite(smoothed_log_std(extreme)).all()
    assert torch.isinf(torch.log(torch.log(1 + torch.exp(0.693 * extreme)) / 0.693)).any()  # theirs is not


def test_training_forward_has_gradients(uncond):
    vae = visual_vae("uncond16").train()
    x_in, x_target = vae.preprocess(random_images(2, size=16))
    out = vae.elbo(x_in, x_target)
    (out["recon_loss"] + out["rate"]).mean().backward()
    assert all(p.grad is not None for p in vae.parameters())


def test_config_errors_name_the_field():
    base = {"model": dict(model.VisualVAEConfig.preset("cifar10").to_dict())}
    for k in ("sigma_q", "c_aug", "dataset"):
        base["model"].pop(k)
    bad = {**base["model"], "c_mult": [2, 1, 1, 1, 1]}
    with pytest.raises(model.VisualVAEConfigError, match=r"c_mult\[0\] must be 1"):
        model.VisualVAE.from_config({"model": bad})
    with pytest.raises(model.VisualVAEConfigError, match="enc_nlayers has 4 entries but nlayers has 5"):
        model.VisualVAE.from_config({"model": {**base["model"], "enc_nlayers": [1, 1, 1, 1]}})
    with pytest.raises(model.VisualVAEConfigError, match="unknown \\['heads'\\]"):
        model.VisualVAE.from_config({"model": {**base["model"], "heads": 2}})
    with pytest.raises(model.VisualVAEConfigError, match="share a resolution"):
        model.VisualVAE.from_config({"model": {**base["model"], "resolution": 8}})
    with pytest.raises(model.VisualVAEConfigError, match="superres_nlayers"):
        model.VisualVAE.from_config({"model": {**base["model"], "is_superres": True}})
    with pytest.raises(model.VisualVAEConfigError, match="unknown visual-vae preset 'celeba'"):
        model.VisualVAEConfig.preset("celeba")


@pytest.mark.parametrize("kind", ["cond8", "sr8to16"])
def test_the_stream_stays_float32_under_autocast(kind):
    """Mixed precision computes the convolutions in bf16, but the residual stream, which sums every
    layer's contribution, stays float32 through width-changing up-sampling and the low-res U-Net."""
    vae = visual_vae(kind)
    low = random_images(2, size=8) if vae.hp.is_superres else None
    stop = len([r for r in vae.hp.layer_resolutions if r == vae.hp.layer_resolutions[0]])
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        args = vae._decode_args(
            (), None, 2, 1.0, None, [1, 2], (1.0, 1.0), vae.low_res_features(low, None, 2)
        )
        piece = vae.top_down(2, **args, stop=stop)
        whole = vae.top_down(2, **args)
    assert all(x.dtype == torch.float32 for x in [*piece.streams.xs.values(), *piece.streams.xs_u.values()])
    assert whole.streams.xs and all(x.dtype == torch.float32 for x in whole.streams.xs.values())
