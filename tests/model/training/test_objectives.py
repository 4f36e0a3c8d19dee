"""Training objectives: the information schedule, KL weights, label dropout."""

from __future__ import annotations

import math

import pytest
import torch

from model.training.objectives import (
    drop_labels,
    information_schedule,
    kl_weights,
    resolution_schedule,
    training_loss,
)
from tests.factories import random_images


def test_information_schedule_is_a_shifted_exponential_summing_to_66_7_percent():
    r = information_schedule(39)
    assert math.isclose(r.sum().item(), 66.7, rel_tol=1e-6)
    raw = torch.tensor([1000 ** (i / 38) + 10 for i in range(39)], dtype=torch.float64)
    assert torch.allclose(r.double(), 66.7 * raw / raw.sum(), rtol=1e-6)
    # visual-vae's cifar10 configuration: 0.115 % for the top layer up to 10.52 % for the last.
    assert round(r[0].item(), 3) == 0.115 and round(r[-1].item(), 2) == 10.52


def test_kl_weights_on_a_hand_computed_case():
    # Total KL 100 nats, the first layer's target share 1 %: a = 1, b = 2, c = 3.
    share = torch.tensor([1.0, 99.0])
    cases = {0.0: 0.1, 0.5: 0.5, 1.0: 1.0, 1.5: 1.0, 2.0: 1.0, 2.5: 1.5, 3.0: 2.0, 4.0: 2.0}
    for kl0, expected in cases.items():
        kl = torch.tensor([[kl0, 100.0 - kl0]])
        assert math.isclose(kl_weights(kl, share)[0, 0].item(), expected, rel_tol=1e-6), kl0


def test_kl_weights_are_per_image_and_detached():
    kl = torch.tensor([[1.0, 99.0], [50.0, 50.0]], requires_grad=True)
    w = kl_weights(kl, torch.tensor([1.0, 99.0]))
    assert not w.requires_grad
    assert w[0, 0] == 1.0 and w[1, 0] == 2.0  # the same layer, two different images


def test_zero_total_kl_gives_finite_weights():
    w = kl_weights(torch.zeros(3, 5), information_schedule(5))
    assert torch.isfinite(w).all() and (w == 1.0).all()


def test_label_dropout_rate():
    torch.manual_seed(0)
    labels = torch.arange(100_000) % 10
    dropped = drop_labels(labels, 0.1)
    rate = (dropped == -1).float().mean().item()
    assert abs(rate - 0.1) < 0.005
    kept = dropped != -1
    assert torch.equal(dropped[kept], labels[kept])
    assert (drop_labels(labels, 0.0) == labels).all()


def test_reweighted_loss_is_finite_and_keeps_the_unweighted_bound(tiny):
    x_in, x_target = tiny.preprocess(random_images(2))
    torch.manual_seed(0)
    plain, stats = training_loss(tiny, x_in, x_target, None, None)
    torch.manual_seed(0)
    weighted, stats_w = training_loss(tiny, x_in, x_target, None, information_schedule(tiny.hp.num_layers))
    assert torch.isfinite(weighted)
    assert torch.equal(stats["elbo"], stats_w["elbo"])  # the reported bound is never reweighted
    assert plain.item() == pytest.approx(stats["elbo"].mean().item())
    assert weighted.item() != pytest.approx(plain.item())


def test_the_resolution_schedule_gives_each_layer_a_share_proportional_to_its_resolution():
    r = resolution_schedule([16, 16, 32, 32])
    assert math.isclose(r.sum().item(), 66.7, rel_tol=1e-6)
    assert torch.allclose(r, torch.tensor([1.0, 1.0, 2.0, 2.0]) * 66.7 / 6)
    # visual-vae's 32 -> 64 configuration: 20 layers at each, 1.112 % and 2.223 %.
    r = resolution_schedule([32] * 20 + [64] * 20)
    assert (round(r[0].item(), 3), round(r[-1].item(), 3)) == (1.112, 2.223)
