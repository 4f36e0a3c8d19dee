"""What each operation computes for a batch: per-image items in, one model pass, per-image results out.

An item is one image's worth of work with all its own parameters (seed, temperature, label,
guidance, reconstruction depth, given latents). `run_*` collates a list of items into a single call
of the model's user-level API, which takes per-image rows for all of them, and splits the output.
Because every image draws from its own seeded generator, an item's result does not depend on which
other items share its batch; the engine relies on that when it re-runs parts of a failed batch.
These functions are blocking and run on the engine's device thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np
import torch

from model.likelihoods import LN2
from model.vae import VDVAE

from .items import (
    DecodeItem,
    EncodeItem,
    EncodeResult,
    Image,
    ReconstructItem,
    ReconstructResult,
    SampleItem,
)

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")
# Items that carry sampling options (temperature, label, guidance, seed).
SamplingItem = SampleItem | DecodeItem


# --------------------------------------------------------------------------------------------
# Collating per-image parameters
# --------------------------------------------------------------------------------------------


def temperatures(
    items: Sequence[SamplingItem] | Sequence[ReconstructItem], num_layers: int
) -> float | torch.Tensor:
    """One float when every item agrees on a scalar, else an (n, L) tensor of per-image rows.

    Both forms give bit-identical images: the model adds log(t) to the prior's log-std either way.
    """
    temps = [it.temperature for it in items]
    if all(isinstance(t, float) for t in temps) and len(set(temps)) == 1:
        return temps[0]
    rows = [[t] * num_layers if isinstance(t, float) else list(t) for t in temps]
    return torch.tensor(rows, dtype=torch.float32)


def labels(vae: VDVAE, items: Sequence[Any]) -> list[int] | None:
    """Per-image labels for a conditional model (-1: unconditional), None for an unconditional one."""
    if not vae.hp.conditional:
        return None
    return [-1 if it.label is None else it.label for it in items]


def guidance(items: Sequence[SamplingItem]) -> torch.Tensor | None:
    """(n, 2) guidance weights, zeros for unguided images; None when no image is guided."""
    if all(it.guidance is None for it in items):
        return None
    return torch.tensor([it.guidance or (0.0, 0.0) for it in items], dtype=torch.float32)


def stack_images(items: Sequence[ReconstructItem] | Sequence[EncodeItem]) -> torch.Tensor:
    return torch.from_numpy(np.stack([it.image for it in items]))


# --------------------------------------------------------------------------------------------
# The operations
# --------------------------------------------------------------------------------------------


def sampling_options(vae: VDVAE, items: Sequence[SamplingItem]) -> dict[str, Any]:
    """vae.sample's per-image temperature, labels, guidance and seeds for a batch of items."""
    return {
        "temperature": temperatures(items, vae.hp.num_layers),
        "labels": labels(vae, items),
        "guidance": guidance(items),
        "seeds": [it.seed for it in items],
    }


def run_sample(vae: VDVAE, items: Sequence[SampleItem]) -> list[Image]:
    images = vae.sample(len(items), **sampling_options(vae, items))
    return list(images.cpu().numpy())


def run_reconstruct(vae: VDVAE, items: Sequence[ReconstructItem]) -> list[ReconstructResult]:
    rec = vae.reconstruct(
        stack_images(items),
        layers=[it.layers for it in items],
        temperature=temperatures(items, vae.hp.num_layers),
        seeds=[it.seed for it in items],
        labels=labels(vae, items),
    )
    images, bits = rec.images.cpu().numpy(), rec.bits.float().cpu().tolist()
    return [ReconstructResult(image=img, bits=b) for img, b in zip(images, bits)]


def run_encode(vae: VDVAE, items: Sequence[EncodeItem]) -> list[EncodeResult]:
    enc = vae.encode(stack_images(items), seeds=[it.seed for it in items], labels=labels(vae, items))
    kl_bits = enc.kl_bits.float().cpu().numpy()
    rate = (enc.rate / LN2).float().cpu().tolist()
    distortion = (enc.distortion / LN2).float().cpu().tolist()
    elbo = enc.bits_per_dim.float().cpu().tolist()
    k_max = max(it.latent_layers for it in items)
    z = [layer.float().cpu().numpy() for layer in enc.z[:k_max]]
    return [
        EncodeResult(
            kl_bits=kl_bits[b].tolist(),
            rate_bpd=rate[b],
            distortion_bpd=distortion[b],
            elbo_bpd=elbo[b],
            latents=[z[i][b] for i in range(it.latent_layers)],
        )
        for b, it in enumerate(items)
    ]


def run_decode(vae: VDVAE, items: Sequence[DecodeItem]) -> list[Image]:
    """Images decoded from each item's top latents (its own depth), the rest from the prior."""
    depths = [len(it.latents) for it in items]
    shapes = vae.latent_shapes()
    latents = []
    for i in range(max(depths)):
        # Items given fewer layers take zeros here; latent_layers makes the model ignore them.
        layer = np.zeros((len(items), *shapes[i]), dtype=np.float32)
        for b, it in enumerate(items):
            if i < len(it.latents):
                layer[b] = it.latents[i]
        latents.append(torch.from_numpy(layer))
    images = vae.sample(
        len(items),
        **sampling_options(vae, items),
        latents=latents,
        latent_layers=depths,
    )
    return list(images.cpu().numpy())


@dataclass(frozen=True)
class Operation(Generic[ItemT, ResultT]):
    """One batched operation: its runner (items in, one result per item out, in order) and the
    items of a small warm-up batch for a model."""

    name: str
    run: Callable[[VDVAE, Sequence[ItemT]], list[ResultT]]
    warmup_items: Callable[[VDVAE], list[ItemT]]


def _blank(vae: VDVAE) -> np.ndarray:
    hp = vae.hp
    return np.zeros((hp.image_size, hp.image_size, hp.image_channels), dtype=np.uint8)


def _warm_sample(vae: VDVAE) -> list[SampleItem]:
    return [SampleItem(seed=0), SampleItem(seed=1, temperature=0.5)]


def _warm_reconstruct(vae: VDVAE) -> list[ReconstructItem]:
    L = vae.hp.num_layers
    return [ReconstructItem(image=_blank(vae), layers=L, seed=0), ReconstructItem(_blank(vae), L // 2, 1)]


def _warm_encode(vae: VDVAE) -> list[EncodeItem]:
    return [EncodeItem(image=_blank(vae), seed=0, latent_layers=1), EncodeItem(image=_blank(vae), seed=1)]


def _warm_decode(vae: VDVAE) -> list[DecodeItem]:
    z = np.zeros(vae.latent_shapes()[0], dtype=np.float32)
    return [DecodeItem(latents=(z,), seed=0), DecodeItem(latents=(z,), seed=1, temperature=0.5)]


OPERATIONS: dict[str, Operation[Any, Any]] = {
    op.name: op
    for op in (
        Operation[SampleItem, Image]("sample", run_sample, _warm_sample),
        Operation[ReconstructItem, ReconstructResult]("reconstruct", run_reconstruct, _warm_reconstruct),
        Operation[EncodeItem, EncodeResult]("encode", run_encode, _warm_encode),
        Operation[DecodeItem, Image]("decode", run_decode, _warm_decode),
    )
}
