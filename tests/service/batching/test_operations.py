"""Operations: per-image parameters in one pass give each image exactly its solo result."""

from __future__ import annotations

import numpy as np
import torch

from model.imageio import fast_png
from service.batching.items import DecodeItem, EncodeItem, ReconstructItem, SampleItem, StreamItem
from service.batching.operations import (
    INTERPOLATE,
    run_decode,
    run_encode,
    run_interpolate,
    run_reconstruct,
    run_sample,
    run_sample_stream,
    temperatures,
)

from ..conftest import digit_like


def test_mixed_sample_parameters_share_a_pass(served_mnist) -> None:
    vae = served_mnist.vae
    L = vae.hp.num_layers
    items = [
        SampleItem(seed=1),
        SampleItem(seed=2, temperature=0.5, label=3),
        SampleItem(seed=3, temperature=tuple([0.9] * (L - 1) + [0.1]), label=7, guidance=(2.0, 1.0)),
        SampleItem(seed=4, label=1, guidance=(0.0, 0.0)),
    ]
    together = run_sample(vae, items)
    for item, image in zip(items, together):
        assert np.array_equal(image, run_sample(vae, [item])[0]), item


def test_mixed_reconstruction_depths_share_a_pass(served_mnist) -> None:
    vae = served_mnist.vae
    L = vae.hp.num_layers
    image = digit_like()
    items = [
        ReconstructItem(image=image, layers=L, seed=0),
        ReconstructItem(image=digit_like(seed=1), layers=1, seed=1, temperature=0.7, label=2),
        ReconstructItem(image=image, layers=0, seed=2),
    ]
    together = run_reconstruct(vae, items)
    for item, result in zip(items, together):
        alone = run_reconstruct(vae, [item])[0]
        assert np.array_equal(result.image, alone.image)
        assert abs(result.bits - alone.bits) <= 1e-3 * max(1.0, alone.bits)
    assert together[2].bits == 0.0 and together[0].bits >= together[1].bits


def test_encode_returns_each_items_own_latent_count(served_mnist) -> None:
    vae = served_mnist.vae
    items = [
        EncodeItem(image=digit_like(), seed=0, latent_layers=2),
        EncodeItem(image=digit_like(seed=3), seed=1),
    ]
    together = run_encode(vae, items)
    assert [len(r.latents) for r in together] == [2, 0]
    alone = run_encode(vae, [items[0]])[0]
    np.testing.assert_allclose(together[0].kl_bits, alone.kl_bits, rtol=1e-4, atol=1e-4)
    for z, shape in zip(together[0].latents, vae.latent_shapes()):
        assert z.shape == shape and z.dtype == np.float32


def test_mixed_decode_depths_share_a_pass(served_mnist) -> None:
    vae = served_mnist.vae
    shapes = vae.latent_shapes()
    rng = np.random.default_rng(0)
    z = [rng.standard_normal(s).astype(np.float32) for s in shapes[:3]]
    items = [
        DecodeItem(latents=tuple(z[:1]), seed=0),
        DecodeItem(latents=tuple(z[:3]), seed=1, temperature=0.5, label=4),
        DecodeItem(latents=tuple(z[:2]), seed=2, label=4, guidance=(1.0, 0.0)),
    ]
    together = run_decode(vae, items)
    for item, image in zip(items, together):
        assert np.array_equal(image, run_decode(vae, [item])[0])


def test_answered_images_carry_their_png_from_the_engine_thread(served_mnist) -> None:
    """Every operation whose answer holds images writes their PNGs in the pass (off the loop)."""
    vae = served_mnist.vae
    L = vae.hp.num_layers
    z = run_encode(vae, [EncodeItem(image=digit_like(), seed=0, latent_layers=1)])[0].latents
    images = [
        *run_sample(vae, [SampleItem(seed=1), SampleItem(seed=2)]),
        *(r.image for r in run_reconstruct(vae, [ReconstructItem(image=digit_like(), layers=L, seed=0)])),
        *run_decode(vae, [DecodeItem(latents=tuple(z), seed=3)]),
        *run_interpolate(vae, INTERPOLATE.warmup_items(vae)),
    ]
    previews = []

    class Recording:
        def send(self, stage, rows) -> bool:
            previews.extend(rows.values())
            return True

    stream = [StreamItem(SampleItem(seed=4), Recording(), 0)]
    images += [*run_sample_stream(vae, stream), *previews]
    assert previews
    for image in images:
        assert image.png == fast_png(np.asarray(image))


def test_temperatures_collate_to_a_float_or_per_image_rows() -> None:
    same = [SampleItem(seed=0, temperature=0.7), SampleItem(seed=1, temperature=0.7)]
    assert temperatures(same, 3) == 0.7
    mixed = [SampleItem(seed=0, temperature=0.7), SampleItem(seed=1, temperature=(1.0, 0.5, 0.2))]
    rows = temperatures(mixed, 3)
    assert torch.equal(rows, torch.tensor([[0.7, 0.7, 0.7], [1.0, 0.5, 0.2]]))
