"""encode (per-layer posterior stats) and reconstruct (partial posterior reconstruction)."""

from __future__ import annotations

import math

import pytest
import torch

from tests.factories import random_images


def test_encode_reports_per_layer_posterior_and_kl(tiny):
    x = random_images(3)
    enc = tiny.encode(x, seeds=[1, 2, 3])
    L = tiny.hp.num_layers
    assert len(enc) == len(enc.mean) == len(enc.std) == L
    for z, m, s, r in zip(enc.z, enc.mean, enc.std, tiny.hp.layer_resolutions, strict=True):
        assert z.shape == m.shape == s.shape == (3, tiny.hp.zdim, r, r)
        assert (s > 0).all()
    assert enc.kl.shape == (3, L) and (enc.kl >= 0).all()
    assert torch.allclose(enc.kl_bits, enc.kl / math.log(2))
    assert torch.allclose(enc.rate, enc.kl.sum(1) / (32 * 32 * 3))
    assert torch.allclose(enc.bits_per_dim, (enc.distortion + enc.rate) / math.log(2))


def test_encode_agrees_with_the_elbo(tiny):
    x = random_images(2)
    enc = tiny.encode(x, seeds=[4, 5])
    noise = [z.new_zeros(z.shape) for z in enc.z]  # any fixed noise works for both calls
    out = tiny.elbo(*tiny.preprocess(x), noise=noise)
    enc2 = tiny.encode(x, noise=noise)
    assert torch.allclose(out["kl"], enc2.kl) and torch.allclose(out["distortion"], enc2.distortion)


def test_posterior_sample_is_mean_plus_std_times_noise(tiny):
    x = random_images(1)
    noise = [torch.full((1, *shape), 0.5) for shape in tiny.latent_shapes()]
    enc = tiny.encode(x, noise=noise)
    for z, m, s, eps in zip(enc.z, enc.mean, enc.std, noise, strict=True):
        assert torch.allclose(z, m + s * eps, atol=1e-6)


def test_full_reconstruction_decodes_the_posterior_latents(tiny):
    x = random_images(2)
    L = tiny.hp.num_layers
    rec = tiny.reconstruct(x, layers=L, seeds=[1, 2])
    # Same seeds -> same posterior noise: decoding those latents gives the same image.
    z = tiny.encode(x, seeds=[1, 2]).z
    again = tiny.sample(2, latents=z, seeds=[1, 2])
    assert torch.equal(rec.images, again)
    assert torch.allclose(rec.bits, tiny.encode(x, seeds=[1, 2]).kl_bits.sum(1))


def test_zero_layers_is_a_prior_sample(tiny):
    x = random_images(2)
    rec = tiny.reconstruct(x, layers=0, temperature=0.7, seeds=[3, 4])
    assert torch.equal(rec.images, tiny.sample(2, temperature=0.7, seeds=[3, 4]))
    assert (rec.bits == 0).all()


def test_per_image_depths_in_one_pass_match_separate_calls(tiny):
    x = random_images(3)
    batch = tiny.reconstruct(x, layers=[0, 5, 13], temperature=0.5, seeds=[10, 11, 12])
    for i, k in enumerate([0, 5, 13]):
        alone = tiny.reconstruct(x[i : i + 1], layers=k, temperature=0.5, seeds=[10 + i])
        d = (batch.images[i].int() - alone.images[0].int()).abs()
        assert d.max() <= 1 and (d > 0).float().mean() <= 1e-3
        assert torch.allclose(batch.bits[i], alone.bits[0], rtol=1e-4, atol=1e-4)
    assert batch.bits[0] == 0 and batch.bits[1] < batch.bits[2]


def test_more_layers_use_more_bits(tiny):
    x = random_images(1)
    bits = [tiny.reconstruct(x, layers=k, seeds=[0]).bits.item() for k in (1, 4, 8, 13)]
    assert bits == sorted(bits)


@pytest.mark.parametrize("layers", [-1, 14, [1, 2]])
def test_bad_depth_is_explained(tiny, layers):
    with pytest.raises(ValueError, match=r"layers must be in 0\.\.13"):
        tiny.reconstruct(random_images(1), layers=layers, seeds=0)


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (torch.zeros(1, 32, 32, 1, dtype=torch.uint8), r"shape \(n, 32, 32, 3\)"),
        (torch.zeros(1, 16, 16, 3, dtype=torch.uint8), r"shape \(n, 32, 32, 3\)"),
        (torch.zeros(1, 32, 32, 3), "uint8"),
    ],
)
def test_bad_images_are_explained(tiny, images, message):
    with pytest.raises(ValueError, match=message):
        tiny.reconstruct(images, layers=1, seeds=0)


def test_conditional_model_encodes_without_a_label(tiny_cond):
    x = random_images(2, channels=1)
    without = tiny_cond.encode(x, seeds=[1, 2])
    with_label = tiny_cond.encode(x, seeds=[1, 2], labels=[3, 4])
    assert torch.isfinite(without.kl).all()
    assert not torch.allclose(without.kl, with_label.kl)
