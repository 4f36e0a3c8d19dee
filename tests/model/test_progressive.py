"""Progressive sampling: a pass run resolution by resolution, with a preview after each."""

from __future__ import annotations

import copy

import pytest
import torch

from model.inference import optimize_for_inference
from model.options import guidance_rows
from model.topdown import resolution_stops
from tests.marks import CUDA_MARKS


def test_resolution_stops_end_each_run_of_layers_at_one_resolution() -> None:
    assert resolution_stops([1, 1, 4, 4, 4, 8, 32]) == [(1, 2), (4, 5), (8, 6), (32, 7)]
    assert resolution_stops([4, 8, 4]) == [(4, 1), (8, 2), (4, 3)]  # a revisited resolution is a new run


def test_a_pass_in_pieces_computes_what_one_call_does_and_leaves_its_start_unchanged(tiny_cond) -> None:
    dec, n, L = tiny_cond.decoder, 3, tiny_cond.hp.num_layers
    gen = torch.Generator().manual_seed(0)
    noise = [torch.randn(n, *s, generator=gen) for s in tiny_cond.latent_shapes()]
    labels = torch.tensor([1, 2, 10])  # 10: the null label
    g = guidance_rows(tiny_cond.hp, (1.5, 0.5), labels, n, dec.embed)
    args = dict(noise=noise, cond=dec.embed(labels), guidance=g)
    with torch.inference_mode():
        whole = dec.top_down(n, **args).px_z
        first = dec.top_down(n, **args, stop=L // 2)
        before = {r: x.clone() for r, x in first.streams.xs.items()}
        # A branch off the midpoint (another noise) must not change the streams the rest resumes from.
        dec.top_down(n, **{**args, "noise": [torch.zeros_like(e) for e in noise]}, start=first.streams)
        rest = dec.top_down(n, **args, start=first.streams).px_z
    assert first.px_z is None
    assert all(torch.equal(before[r], x) for r, x in first.streams.xs.items())
    assert torch.equal(whole, rest)


def test_the_last_stage_is_exactly_sample(tiny, tiny_cond) -> None:
    L = tiny.hp.num_layers
    temps = [0.5 + 0.05 * i for i in range(L)]
    stages = list(tiny.sample_stages(3, temperature=temps, seeds=[4, 5, 6]))
    assert [(s.resolution, s.layers) for s in stages] == resolution_stops(tiny.hp.layer_resolutions)
    assert [s.final for s in stages] == [False] * (len(stages) - 1) + [True]
    assert torch.equal(stages[-1].images, tiny.sample(3, temperature=temps, seeds=[4, 5, 6]))
    kw = dict(labels=[1, None, 3], guidance=(1.0, 2.0), temperature=0.8, seeds=[7, 8, 9])
    *_, last = tiny_cond.sample_stages(3, **kw)
    assert torch.equal(last.images, tiny_cond.sample(3, **kw))


def test_a_preview_is_the_image_with_the_layers_below_at_their_prior_mean(tiny_cond) -> None:
    L = tiny_cond.hp.num_layers
    kw = dict(labels=[2, 5], guidance=(1.0, 0.5), seeds=[11, 12])
    for stage in list(tiny_cond.sample_stages(2, temperature=0.9, **kw))[:-1]:
        k = stage.layers
        # Temperature 0 below layer k: each of those z is its prior's mean given the layers above.
        expected = tiny_cond.sample(2, temperature=[0.9] * k + [0.0] * (L - k), **kw)
        assert torch.equal(stage.images, expected), stage.resolution


def test_stopping_early_computes_no_more_layers(tiny) -> None:
    calls = []  # one per layer computed: each layer runs its residual net once
    hooks = [b.resnet.register_forward_hook(lambda *_: calls.append(1)) for b in tiny.decoder.dec_blocks]
    try:
        stages = tiny.sample_stages(2, seeds=[1, 2])
        first = next(stages)
        stages.close()
        after_first = len(calls)
        list(tiny.sample_stages(2, seeds=[1, 2]))
        full = len(calls) - after_first
    finally:
        for h in hooks:
            h.remove()
    L, stops = tiny.hp.num_layers, [stop for _, stop in resolution_stops(tiny.hp.layer_resolutions)]
    # The first stage: its own layers, then its preview runs the rest of the pass at temperature 0.
    assert after_first == first.layers + (L - first.layers)
    # The whole pass: every layer once, and every preview the layers below its stage.
    assert full == L + sum(L - stop for stop in stops[:-1])


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"channels_last": True}, id="channels-last"),
        pytest.param(
            {"device": "cuda", "amp": "bf16"},
            id="cuda-bf16",
            marks=CUDA_MARKS,
        ),
    ],
)
def test_the_inference_form_ends_in_its_own_samples_too(tiny_cond, options) -> None:
    device = options.pop("device", "cpu")
    fast = optimize_for_inference(copy.deepcopy(tiny_cond).to(device), **options)
    kw = dict(labels=[1, None, 3], guidance=(1.0, 2.0), temperature=0.8, seeds=[7, 8, 9])
    *_, last = fast.sample_stages(3, **kw)
    assert torch.equal(last.images, fast.sample(3, **kw))
