"""Shared fixtures for the model tests."""

from __future__ import annotations

import pytest

import model
from tests.factories import perturbed, tiny_base16, tiny_sr16to32


@pytest.fixture(scope="session")
def tiny() -> model.VDVAE:
    """The official TINY architecture (3-channel DMoL, 13 latent layers), unconditional."""
    return perturbed(model.HParams.preset("tiny"))


@pytest.fixture(scope="session")
def tiny_cond() -> model.VDVAE:
    """A class-conditional, 1-channel variant of TINY (10 classes)."""
    hp = model.HParams.preset("tiny").replace(
        num_classes=10, image_channels=1, dataset="mnist", num_mixtures=3
    )
    return perturbed(hp, seed=1)


@pytest.fixture(scope="session")
def base16() -> model.VDVAE:
    return perturbed(tiny_base16(), seed=2)


@pytest.fixture(scope="session")
def sr16() -> model.VDVAE:
    return perturbed(tiny_sr16to32(), seed=3)
