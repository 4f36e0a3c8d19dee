"""openai/vdvae's code imported from a checkout ($VDVAE_OFFICIAL_CHECKOUT here; skipped without one):
it builds our architecture, takes our state dict as it is, and samples."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from model import VDVAE, HParams
from model.tools.vdvae_reference import official_model
from model.tools.visual_vae_reference import ReferenceError

CHECKOUT = os.environ.get("VDVAE_OFFICIAL_CHECKOUT")


def test_a_folder_that_is_not_their_checkout_is_refused(tmp_path) -> None:
    with pytest.raises(ReferenceError, match="not a checkout of openai/vdvae"):
        official_model(tmp_path, HParams.preset("tiny"))


def test_only_what_their_code_builds_is_asked_of_it(tmp_path) -> None:
    with pytest.raises(ValueError, match="unconditional RGB DMoL models without attention only"):
        official_model(tmp_path, HParams.preset("mnist"))


@pytest.mark.skipif(not CHECKOUT, reason="set VDVAE_OFFICIAL_CHECKOUT to a checkout of openai/vdvae")
def test_their_model_takes_our_weights_and_samples() -> None:
    hp = HParams.preset("tiny")
    ours = VDVAE(hp)
    theirs = official_model(CHECKOUT, hp)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    with torch.no_grad():
        images = theirs.eval().forward_uncond_samples(2, t=None)
    assert isinstance(images, np.ndarray) and images.shape == (2, 32, 32, 3) and images.dtype == np.uint8
