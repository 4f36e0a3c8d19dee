"""Output heads: DMoL for 1 and 3 channels, and the Gaussian output layer's loss and NLL."""

from __future__ import annotations

import math

import pytest
import torch

import model
from model.likelihoods import (
    discretized_gaussian_nll,
    dmol_channels,
    dmol_nll,
    dmol_sample,
    gaussian_output_loss,
)

LEVELS = (torch.arange(256, dtype=torch.float32) / 127.5 - 1.0).view(1, 16, 16, 1)  # every 8-bit value


def test_dmol_channel_counts():
    assert dmol_channels(3, 10) == 100  # the official layout
    assert dmol_channels(1, 5) == 15  # logits, means, log-scales


def test_one_channel_dmol_is_a_distribution_over_256_levels():
    # A single-pixel model: the probabilities of all 256 levels must sum to one.
    torch.manual_seed(0)
    params = torch.randn(1, 1, 1, dmol_channels(1, 4)) * 2
    logp = torch.stack([-dmol_nll(v.view(1, 1, 1, 1), params, 4) for v in LEVELS.view(-1)])
    assert math.isclose(logp.exp().sum().item(), 1.0, rel_tol=1e-4)


def test_one_channel_dmol_matches_a_logistic_by_hand():
    # One mixture, mean 0, log-scale log(0.1): P(x in bin) = sigmoid((x + 1/255)/s) - sigmoid((x - 1/255)/s).
    s = 0.1
    params = torch.tensor([0.0, 0.0, math.log(s)]).view(1, 1, 1, 3)
    x = torch.tensor([0.2]).view(1, 1, 1, 1)
    p = torch.sigmoid((x + 1 / 255) / s) - torch.sigmoid((x - 1 / 255) / s)
    assert torch.allclose(dmol_nll(x, params, 1), -p.log().view(1), rtol=1e-5)


@pytest.mark.parametrize("channels", [1, 3])
def test_dmol_samples_stay_in_range_and_follow_the_mean(channels):
    m = 2
    params = torch.zeros(2, 4, 4, dmol_channels(channels, m))
    params[..., m : 2 * m] = 0.5  # the means of channel 0 (and the others stay 0)
    log_scale_index = [
        m + (3 if channels == 3 else 2) * m * c + m + k for c in range(channels) for k in range(m)
    ]
    params[..., log_scale_index] = -7.0  # nearly deterministic
    u_mix = torch.full((2, 4, 4, m), 0.5)
    u = torch.full((2, 4, 4, channels), 0.5)
    x = dmol_sample(params, channels, m, u_mix, u)
    assert x.shape == (2, 4, 4, channels)
    assert torch.allclose(x[..., 0], torch.full_like(x[..., 0], 0.5), atol=1e-3)
    assert x.abs().max() <= 1.0


def test_gaussian_output_loss_is_the_kl_from_the_sigma_q_gaussian():
    sq = 0.025
    x = torch.tensor([[0.3]])
    mean, logvar = torch.tensor([[0.1]]), torch.tensor([[math.log(0.04)]])
    expected = 0.5 * math.log(0.04 / sq**2) + (sq**2 + 0.2**2) / (2 * 0.04) - 0.5
    assert math.isclose(gaussian_output_loss(x, mean, logvar, sq).item(), expected, rel_tol=1e-5)
    # Zero exactly when the model Gaussian is the data Gaussian.
    assert abs(gaussian_output_loss(x, x, torch.tensor([[2 * math.log(sq)]]), sq).item()) < 1e-6


def test_discretized_gaussian_sums_to_one_over_the_levels():
    mean, logvar = torch.tensor(0.3), torch.tensor(math.log(0.05**2))
    nll = discretized_gaussian_nll(LEVELS.view(256, 1), mean.expand(256, 1), logvar.expand(256, 1))
    assert math.isclose((-nll).exp().sum().item(), 1.0, rel_tol=1e-5)


def test_gaussian_head_elbo_uses_the_discretized_nll_and_trains_on_the_sigma_q_loss():
    hp = model.HParams.preset("tiny").replace(output_head="gaussian")
    vae = model.VDVAE(hp)
    x = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8)
    x_in, x_target = vae.preprocess(x)
    out = vae.elbo(x_in, x_target)
    params = vae.head(vae.decoder.top_down(2, activations=vae.encoder(x_in), posterior_layers=[13, 13]).px_z)
    assert params.shape == (2, 32, 32, 6)
    assert not torch.equal(out["recon_loss"], out["distortion"])
    assert torch.allclose(out["elbo"], out["distortion"] + out["rate"])
    out["recon_loss"].mean().backward()
    assert vae.decoder.out_net.out_conv.weight.grad.abs().sum() > 0


def test_gaussian_head_shows_its_mean():
    hp = model.HParams.preset("tiny").replace(output_head="gaussian", image_channels=1, dataset="mnist")
    vae = model.VDVAE(hp).eval()
    params = torch.zeros(1, 32, 32, 2)
    params[..., 0] = 0.5  # mean 0.5 -> (0.5 + 1) * 127.5 = 191.25 -> 191
    img = vae.params_to_images(params)
    assert img.shape == (1, 32, 32, 1) and (img == 191).all()


def test_one_channel_dmol_model_trains():
    hp = model.HParams.preset("tiny").replace(image_channels=1, dataset="mnist", num_mixtures=3)
    vae = model.VDVAE(hp)
    assert vae.head.out_conv.out_channels == 9
    x = torch.randint(0, 256, (2, 32, 32, 1), dtype=torch.uint8)
    out = vae.elbo(*vae.preprocess(x))
    out["elbo"].mean().backward()
    assert torch.isfinite(out["elbo"]).all()
    assert vae.eval().sample(2, seeds=0).shape == (2, 32, 32, 1)
