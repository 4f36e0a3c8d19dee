"""Interpolation in each latent layer's standardized prior noise: the ends are the endpoint images,
the path is spherical, and a batch of paths gives what each path gives alone."""

from __future__ import annotations

import pytest
import torch

from model.interpolation import path_draws, path_temperature, slerp, slerp_uniform, steps_t
from model.noise import Draws, GivenNoise
from tests.factories import random_images


def test_slerp_ends_are_exact_and_the_middle_keeps_a_draws_norm() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 4096, generator=g), torch.randn(3, 4096, generator=g)
    t = torch.tensor([0.0, 0.5, 1.0])
    out = slerp(a, b, t)
    assert torch.equal(out[0], a[0]) and torch.equal(out[2], b[2])
    # Two independent draws are nearly orthogonal: the straight line's midpoint shrinks by 1/sqrt(2),
    # the spherical one keeps the norm a draw has.
    assert abs(out[1].norm() / a[1].norm() - 1) < 0.02
    assert abs(((a[1] + b[1]) / 2).norm() / a[1].norm() - 2**-0.5) < 0.02


def test_slerp_of_equal_rows_is_that_row() -> None:
    a = torch.randn(2, 8, 1, 1)
    assert torch.allclose(slerp(a, a.clone(), torch.tensor([0.3, 0.7])), a)


def test_slerp_uniform_stays_in_the_samplers_interval_with_exact_ends() -> None:
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(3, 5, 5, generator=g), torch.rand(3, 5, 5, generator=g)
    a[0, 0, 0], b[1, 0, 0] = 1e-5, 1 - 1e-5
    out = slerp_uniform(a, b, torch.tensor([0.0, 0.4, 1.0]))
    assert torch.equal(out[0], a[0]) and torch.equal(out[2], b[2])
    assert bool(((out >= 1e-5) & (out <= 1 - 1e-5)).all())


def test_steps_include_both_ends() -> None:
    assert steps_t(5) == [0.0, 0.25, 0.5, 0.75, 1.0]
    with pytest.raises(ValueError, match="at least 2"):
        steps_t(1)


def test_seed_ends_are_the_samples_of_their_seeds(tiny, tiny_cond) -> None:
    path = tiny.interpolate(11, 12, steps=4)
    assert torch.equal(path[0], tiny.sample(1, seeds=[11])[0])
    assert torch.equal(path[-1], tiny.sample(1, seeds=[12])[0])
    assert not torch.equal(path[1], path[0]) and not torch.equal(path[1], path[-1])
    labelled = tiny_cond.interpolate(3, 4, steps=3, labels=7)
    assert torch.equal(labelled[0], tiny_cond.sample(1, seeds=[3], labels=[7])[0])
    assert torch.equal(labelled[-1], tiny_cond.sample(1, seeds=[4], labels=[7])[0])


def test_left_out_the_label_is_the_start_seeds_and_the_path_starts_at_its_sample(tiny_cond) -> None:
    # The seed rule: sample(seed 13) of a 10-class model is a 3; the path from seed 13 takes label 3,
    # so it starts at exactly that image and ends at seed 14's sample drawn as a 3.
    path = tiny_cond.interpolate(13, 14, steps=3)
    assert torch.equal(path[0], tiny_cond.sample(1, seeds=[13])[0])
    assert torch.equal(path[-1], tiny_cond.sample(1, seeds=[14], labels=[13 % 10])[0])
    assert not torch.equal(path[-1], tiny_cond.sample(1, seeds=[14])[0])
    unconditional = tiny_cond.interpolate(13, 14, steps=3, labels=None)
    assert torch.equal(unconditional[0], tiny_cond.sample(1, seeds=[13], labels=None)[0])


def test_image_ends_are_their_full_reconstructions(tiny) -> None:
    x = random_images(2, seed=5)
    path = tiny.interpolate(x[0], x[1], steps=3, seed=9)
    rec = tiny.reconstruct(x, layers=tiny.hp.num_layers, seeds=[9, 9]).images
    # eps = (z - mu) / sigma decodes back to z up to rounding: the same image, bar a stray level.
    for got, want in ((path[0], rec[0]), (path[-1], rec[1])):
        d = (got.int() - want.int()).abs()
        assert d.max() <= 1 and (d > 0).float().mean() <= 1e-3


def test_prior_noise_of_an_encoding_decodes_to_its_z(tiny_cond) -> None:
    x = random_images(2, channels=1, seed=2)
    enc = tiny_cond.encode(x, seeds=[1, 2], labels=[3, 4])
    draws = tiny_cond.draws([1, 2], x, labels=[3, 4])
    for eps, z, m, s in zip(draws.latent, enc.z, enc.prior_mean, enc.prior_std):
        assert torch.allclose(eps * s + m, z, atol=1e-5)


def test_only_the_top_layers_move_when_k_is_below_all(tiny) -> None:
    L = tiny.hp.num_layers
    frozen = tiny.interpolate(11, 12, steps=4, layers=0, temperature=0.7, seed=5)
    assert all(torch.equal(frozen[0], img) for img in frozen)  # nothing interpolated: one image
    k = 3
    path = tiny.interpolate(11, 12, steps=3, layers=k, temperature=0.7, seed=5)
    a, below = tiny.draws([11]), tiny.draws([5])
    start = Draws(a.latent[:k] + below.latent[k:], below.pixel)
    expected = tiny.sample(1, temperature=[1.0] * k + [0.7] * (L - k), seeds=GivenNoise(start, [5]))
    assert torch.equal(path[0], expected[0])


def test_a_batch_of_paths_gives_what_each_path_gives_alone(tiny) -> None:
    L = tiny.hp.num_layers
    x = random_images(1, seed=3)
    ends = Draws.cat([tiny.draws([1, 2, 6, 6]), tiny.draws([6], x)])  # rows: 1, 2, 6, 6, image
    t = torch.tensor([0.25, 0.5])
    layers = [L, 4]
    given = path_draws(ends.rows([0, 4]), ends.rows([1, 2]), ends.rows([3, 3]), t, layers)
    batch = tiny.sample(
        2, temperature=path_temperature(layers, [1.0, 0.5], L), seeds=GivenNoise(given, [6, 6])
    )
    alone = tiny.interpolate(1, 2, steps=5, seed=6)[1]  # t = 0.25
    assert torch.equal(batch[0], alone)
    alone = tiny.interpolate(x[0], 6, steps=3, layers=4, temperature=0.5, seed=6)[1]  # t = 0.5
    d = (batch[1].int() - alone.int()).abs()
    assert d.max() <= 1 and (d > 0).float().mean() <= 1e-3
