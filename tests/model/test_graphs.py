"""Prior sampling from CUDA graphs by batch bucket (model.graphs): the padded pass of a bucket gives
each image what the eager pass gives it, on the CPU without capture and on CUDA captured."""

from __future__ import annotations

import copy

import pytest
import torch

from model.graphs import SampleGraphs, power_of_two_buckets
from model.inference import optimize_for_inference
from tests.factories import visual_vae
from tests.marks import cuda_only
from tests.model.helpers import assert_same_image

# Per image: a label (None: unconditional), guidance weights (None: unguided), a temperature.
MIXED = dict(labels=[1, None, 3], guidance=torch.tensor([[1.0, 2.0], [0.0, 0.0], [0.5, 0.0]]),
             temperature=torch.tensor([0.8, 1.0, 0.0]), seeds=[7, 8, 9])  # fmt: skip


def with_graphs(vae: torch.nn.Module, buckets: list[int], capture: bool = False) -> torch.nn.Module:
    fast = copy.deepcopy(vae)
    fast.graphs = SampleGraphs(fast, buckets, capture=capture)
    return fast


def per_layer(options: dict, layers: int) -> dict:
    return {**options, "temperature": options["temperature"][:, None].expand(-1, layers)}


def test_buckets_are_powers_of_two_up_to_the_largest_batch(tiny) -> None:
    assert power_of_two_buckets(1) == [1]
    assert power_of_two_buckets(64) == [1, 2, 4, 8, 16, 32, 64]
    assert power_of_two_buckets(48) == [1, 2, 4, 8, 16, 32, 48]
    graphs = SampleGraphs(tiny, [4, 1, 16])
    assert [graphs.bucket(n) for n in (1, 2, 4, 5, 16, 17)] == [1, 4, 4, 16, 16, None]


def test_a_padded_bucket_gives_each_image_its_eager_result(tiny_cond) -> None:
    options = per_layer(MIXED, tiny_cond.hp.num_layers)
    fast = with_graphs(tiny_cond, [8])
    assert_same_image(fast.sample(3, **options), tiny_cond.sample(3, **options))
    assert set(fast.graphs.passes) == {(8, True)}  # guided images: the bucket's guided pass
    unguided = {**options, "guidance": None}
    assert_same_image(fast.sample(3, **unguided), tiny_cond.sample(3, **unguided))
    assert set(fast.graphs.passes) == {(8, True), (8, False)}


def test_the_bucket_is_refilled_for_each_batch(tiny) -> None:
    fast = with_graphs(tiny, [4])
    for seeds in ([1, 2, 3, 4], [5], [6, 7]):
        assert_same_image(fast.sample(len(seeds), seeds=seeds), tiny.sample(len(seeds), seeds=seeds))
    assert len(fast.graphs.passes) == 1


def test_visual_vae_models_take_the_same_path() -> None:
    vae = visual_vae("cond8")
    options = per_layer(MIXED, vae.hp.num_layers)
    assert_same_image(with_graphs(vae, [4]).sample(3, **options), vae.sample(3, **options))


def test_larger_batches_and_given_latents_run_eagerly(tiny) -> None:
    fast = with_graphs(tiny, [2])
    assert torch.equal(fast.sample(3, seeds=0), tiny.sample(3, seeds=0))
    z = tiny.encode(tiny.sample(2, seeds=1), seeds=1).z[:2]
    assert torch.equal(fast.sample(2, latents=z, seeds=2), tiny.sample(2, latents=z, seeds=2))
    assert not fast.graphs.passes


def test_bad_options_are_refused_as_in_the_eager_pass(tiny_cond) -> None:
    fast = with_graphs(tiny_cond, [4])
    with pytest.raises(ValueError, match="label 10 out of range"):
        fast.sample(2, labels=[10, 1], seeds=0)
    with pytest.raises(ValueError, match="temperature must be finite"):
        fast.sample(2, temperature=float("nan"), seeds=0)


def test_graphs_are_cuda_only(tiny) -> None:
    assert optimize_for_inference(copy.deepcopy(tiny), cuda_graphs=True).graphs is None  # ignored on CPU
    with pytest.raises(ValueError, match="CUDA graphs need a model on a CUDA device"):
        SampleGraphs(tiny, [1], capture=True)


@cuda_only
def test_captured_graphs_replay_each_batch_as_the_eager_pass(tiny_cond) -> None:
    # float32 without TF32: a padded batch then differs from the eager one by float32 rounding only.
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        eager = optimize_for_inference(copy.deepcopy(tiny_cond).cuda(), amp="none")
        fast = optimize_for_inference(
            copy.deepcopy(tiny_cond).cuda(), amp="none", cuda_graphs=True, buckets=(4, 8)
        )
        options = per_layer(MIXED, tiny_cond.hp.num_layers)
        for _ in range(2):  # the first call captures, the second replays
            assert_same_image(fast.sample(3, **options), eager.sample(3, **options))
        for n in (1, 5, 8):
            kw = dict(labels=[n % 10] * n, guidance=(1.0, 1.0), seeds=list(range(n, 2 * n)))
            assert_same_image(fast.sample(n, **kw), eager.sample(n, **kw))
    assert all(p.graph is not None for p in fast.graphs.passes.values())
    assert set(fast.graphs.passes) == {(4, True), (8, True)}


@cuda_only
def test_captured_bf16_graphs_replay_a_full_bucket_as_the_eager_pass(tiny_cond) -> None:
    # Every row guided and the batch a bucket: the graph runs the eager pass's shapes, so bf16's
    # coarser rounding of another batch size does not enter.
    eager = optimize_for_inference(copy.deepcopy(tiny_cond).cuda(), amp="bf16")
    fast = optimize_for_inference(copy.deepcopy(tiny_cond).cuda(), amp="bf16", cuda_graphs=True, buckets=(4,))
    for seeds in ([0, 1, 2, 3], [4, 5, 6, 7]):
        kw = dict(labels=[1, 2, 3, 4], guidance=(1.0, 0.5), temperature=0.9, seeds=seeds)
        assert_same_image(fast.sample(4, **kw), eager.sample(4, **kw))
    assert fast.graphs.passes[(4, True)].graph is not None
