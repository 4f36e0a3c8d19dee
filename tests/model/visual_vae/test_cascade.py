"""A visual-vae cascade chains as their evaluate.py does: the super-resolution stage gets the base
model's raw, unclipped mean plus its augmentation noise, and only the final images are clipped."""

from __future__ import annotations

import torch

from model.cascade import Cascade, CascadeStage, hands_raw_mean, stage_seeds
from tests.factories import visual_vae


def test_the_second_stage_takes_the_raw_mean():
    base, sr = visual_vae("cond8", seed=1), visual_vae("sr8to16", seed=2)
    assert hands_raw_mean(base, sr)
    cascade = Cascade([CascadeStage("base", base), CascadeStage("sr", sr)])
    seeds, labels = [4, 5], [1, 7]
    got = cascade.sample(2, labels=labels, seeds=seeds)
    mean = base.head.mean(base.sample_params(2, labels=labels, seeds=stage_seeds(seeds, 0)))
    want = sr.sample(2, labels=labels, seeds=stage_seeds(seeds, 1), low_res=mean)
    assert torch.equal(got, want)
    via_uint8 = sr.sample(
        2, labels=labels, seeds=stage_seeds(seeds, 1), low_res=base.sample(2, labels=labels, seeds=seeds)
    )
    assert not torch.equal(got, via_uint8)


def test_each_image_of_a_cascade_is_independent_of_its_batch():
    cascade = Cascade(
        [CascadeStage("base", visual_vae("cond8", 1)), CascadeStage("sr", visual_vae("sr8to16", 2))]
    )
    alone = cascade.sample(1, labels=[3], seeds=[9])
    batch = cascade.sample(3, labels=[3, 0, None], seeds=[9, 10, 11])
    assert torch.equal(alone[0], batch[0])
