"""What each operation computes for a batch: per-image items in, one model pass, per-image results out.

An item is one image's worth of work with all its own parameters (seed, temperature, label,
guidance, reconstruction depth, given latents). `run_*` collates a list of items into a single call
of the model's user-level API, which takes per-image rows for all of them, and splits the output.
Because every image draws from its own seeded generator, an item's result does not depend on which
other items share its batch; the engine relies on that when it re-runs parts of a failed batch.
These functions are blocking and run on the engine's device thread, which also writes the PNG of
each image an answer carries (items.with_png), off the event loop. Two of them do more than one
call: `sample_stream` hands each resolution's previews to its items' sinks during the pass (and
stops when none wants them), and `interpolate` draws the endpoints of every path in the batch once.

Each operation is an `Operation` object (SAMPLE, RECONSTRUCT, ...) typed by its item and result:
a request hands its items to `SAMPLE` and gets images back, never a name to look up.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import numpy as np
import torch

from model.hierarchical import HierarchicalVAE
from model.interpolation import path_draws, path_temperature
from model.likelihoods import LN2
from model.lowres import to_signed_unit
from model.noise import Draws, GivenNoise
from model.topdown import resolution_stops

from ..errors import Cancelled, InvalidInput, ServiceError, invalid_field
from .items import (
    DecodeItem,
    EncodeItem,
    EncodeResult,
    Endpoint,
    Image,
    InterpolateItem,
    InterpolationPath,
    ReconstructItem,
    ReconstructResult,
    SampleItem,
    StageInfo,
    StageSink,
    StreamItem,
    UpscaleItem,
    with_png,
)

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")
# Items that carry sampling options (temperature, label, guidance, seed).
SamplingItem = SampleItem | DecodeItem | InterpolationPath | UpscaleItem


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


def labels(vae: HierarchicalVAE, items: Sequence[Any]) -> list[int] | None:
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


def sampling_options(vae: HierarchicalVAE, items: Sequence[SamplingItem]) -> dict[str, Any]:
    """vae.sample's per-image temperature, labels, guidance and seeds for a batch of items."""
    return {
        "temperature": temperatures(items, vae.hp.num_layers),
        "labels": labels(vae, items),
        "guidance": guidance(items),
        "seeds": [it.seed for it in items],
    }


def sampled(vae: HierarchicalVAE, n: int, keep_mean: bool, **options: Any) -> list[Image]:
    """vae.sample's images, each carrying its PNG and, with `keep_mean`, the model's raw predicted
    mean (what a cascade's next stage takes from a visual-vae model: model.cascade.hands_raw_mean)."""
    if not keep_mean:
        return with_png(vae.sample(n, **options).cpu().numpy())
    params = vae.sample_params(n, **options)
    images = vae.params_to_images(params, seeds=options["seeds"])
    return with_png(images.cpu().numpy(), means=vae.head.mean(params).cpu().numpy())


def run_sample(vae: HierarchicalVAE, items: Sequence[SampleItem]) -> list[Image]:
    return sampled(vae, len(items), any(it.keep_mean for it in items), **sampling_options(vae, items))


def low_res_batch(items: Sequence[UpscaleItem]) -> torch.Tensor:
    """The items' low-resolution inputs as one batch: uint8 images, or, when any is a raw mean in
    model space, floats (the uint8 ones mapped to [-1, 1] as the model itself would)."""
    arrays = [it.low_res for it in items]
    if all(a.dtype == np.uint8 for a in arrays):
        return torch.from_numpy(np.stack(arrays))
    low = [torch.tensor(a) for a in arrays]
    return torch.stack([t.float() if t.is_floating_point() else to_signed_unit(t) for t in low])


def run_upscale(vae: HierarchicalVAE, items: Sequence[UpscaleItem]) -> list[Image]:
    """A super-resolution model's samples, each conditioned on its item's low-resolution image."""
    noise = [vae.hp.low_res_noise if it.low_res_noise is None else it.low_res_noise for it in items]
    return sampled(
        vae,
        len(items),
        any(it.keep_mean for it in items),
        **sampling_options(vae, items),
        low_res=low_res_batch(items),
        low_res_noise=noise,
    )


def run_reconstruct(vae: HierarchicalVAE, items: Sequence[ReconstructItem]) -> list[ReconstructResult]:
    rec = vae.reconstruct(
        stack_images(items),
        layers=[it.layers for it in items],
        temperature=temperatures(items, vae.hp.num_layers),
        seeds=[it.seed for it in items],
        labels=labels(vae, items),
    )
    images, bits = with_png(rec.images.cpu().numpy()), rec.bits.float().cpu().tolist()
    return [ReconstructResult(image=img, bits=b) for img, b in zip(images, bits)]


def run_encode(vae: HierarchicalVAE, items: Sequence[EncodeItem]) -> list[EncodeResult]:
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


def run_decode(vae: HierarchicalVAE, items: Sequence[DecodeItem]) -> list[Image]:
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
    return with_png(images.cpu().numpy())


def run_sample_stream(vae: HierarchicalVAE, items: Sequence[StreamItem]) -> list[Image | ServiceError]:
    """The samples of `run_sample`, with each resolution's previews handed to the items' sinks on the
    way. When no item's request wants them any more, the pass stops there."""
    count = len(resolution_stops(vae.hp.layer_resolutions))
    stages = vae.sample_stages(len(items), **sampling_options(vae, [it.sample for it in items]))
    with contextlib.closing(stages):
        for index, stage in enumerate(stages):
            images = with_png(stage.images.cpu().numpy())  # every stage is an answer's event
            if stage.final:
                return images
            info = StageInfo(index=index, count=count, resolution=stage.resolution, layers=stage.layers)
            if not deliver(items, info, images):
                return [Cancelled("every client of this streaming pass had gone; it stopped")] * len(items)
    raise RuntimeError("sample_stages ended without its final stage")


def deliver(items: Sequence[StreamItem], stage: StageInfo, images: list[Image]) -> bool:
    """Each request's previews to its sink, in one call per request; whether any still wants them."""
    by_sink: dict[int, tuple[StageSink, dict[int, Image]]] = {}
    for it, image in zip(items, images):
        by_sink.setdefault(id(it.sink), (it.sink, {}))[1][it.index] = image
    wanted = [sink.send(stage, rows) for sink, rows in by_sink.values()]
    return any(wanted)


def run_interpolate(vae: HierarchicalVAE, items: Sequence[InterpolateItem]) -> list[Image]:
    """Images on interpolation paths (model.interpolation), every path's endpoints drawn once per
    batch: seeds from their generators, images through one posterior pass."""
    paths = list({id(it.path): it.path for it in items}.values())
    seeds: list[int] = []  # seed endpoints, and each path's seed for the layers below
    images: list[tuple[Endpoint, InterpolationPath]] = []  # image endpoints
    where: dict[tuple[int, str], tuple[bool, int]] = {}  # (path, end) -> (is an image, index)
    for p in paths:
        for name, end in (("start", p.start), ("end", p.end), ("below", Endpoint(p.seed))):
            where[(id(p), name)] = (
                end.image is not None,
                len(images) if end.image is not None else len(seeds),
            )
            if end.image is None:
                seeds.append(end.seed)
            else:
                images.append((end, p))
    parts = [vae.draws(seeds)]
    if images:
        x = torch.from_numpy(np.stack([e.image for e, _ in images]))
        parts.append(vae.draws([e.seed for e, _ in images], x, labels(vae, [p for _, p in images])))
    draws = Draws.cat(parts)  # the seed rows, then the image rows

    def rows(name: str) -> Draws:
        index = [(len(seeds) if img else 0) + i for img, i in (where[(id(it.path), name)] for it in items)]
        return draws.rows(index)

    layers = [it.path.layers for it in items]
    given = path_draws(
        rows("start"), rows("end"), rows("below"), torch.tensor([it.t for it in items]), layers
    )
    out = vae.sample(
        len(items),
        temperature=path_temperature(layers, [it.path.temperature for it in items], vae.hp.num_layers),
        labels=labels(vae, [it.path for it in items]),
        guidance=guidance([it.path for it in items]),
        seeds=GivenNoise(given, [it.path.seed for it in items]),
    )
    return with_png(out.cpu().numpy())


# Which models an operation serves: "plain" ones (they sample from the prior alone),
# "super_resolution" ones (HParams.low_res: they need a low-resolution image), or "any".
ServedKind = Literal["plain", "super_resolution", "any"]


@dataclass(frozen=True)
class Operation(Generic[ItemT, ResultT]):
    """One batched operation: its name (the metrics' `operation` label), its runner (items in, one
    result per item out, in order; or an item's ServiceError, as a stream that stopped gives), the
    items of a small warm-up batch for a model, and the kind of model it serves."""

    name: str
    run: Callable[[HierarchicalVAE, Sequence[ItemT]], Sequence[ResultT | ServiceError]]
    warmup_items: Callable[[HierarchicalVAE], list[ItemT]]
    models: ServedKind = "plain"

    def serves(self, vae: HierarchicalVAE) -> bool:
        return self.models == "any" or (self.models == "super_resolution") == bool(vae.hp.low_res)

    def unsupported(self, model: str) -> InvalidInput:
        """The 422 of a model this operation does not serve, naming the model's kind."""
        why = (
            "is not a super-resolution model: POST /upscale takes one (GET /v1/models: low_res)"
            if self.models == "super_resolution"
            else "is a super-resolution model: it needs a low-resolution image (POST /upscale, or a cascade)"
        )
        return invalid_field("model", f"model {model!r} {why}")


def _blank(vae: HierarchicalVAE) -> np.ndarray:
    hp = vae.hp
    return np.zeros((hp.image_size, hp.image_size, hp.image_channels), dtype=np.uint8)


def _warm_sample(vae: HierarchicalVAE) -> list[SampleItem]:
    return [SampleItem(seed=0), SampleItem(seed=1, temperature=0.5)]


def _warm_upscale(vae: HierarchicalVAE) -> list[UpscaleItem]:
    hp = vae.hp
    low = np.zeros((hp.low_res, hp.low_res, hp.image_channels), dtype=np.uint8)
    return [UpscaleItem(low, seed=0), UpscaleItem(low, seed=1, temperature=0.5, low_res_noise=0.0)]


def _warm_reconstruct(vae: HierarchicalVAE) -> list[ReconstructItem]:
    L = vae.hp.num_layers
    return [ReconstructItem(image=_blank(vae), layers=L, seed=0), ReconstructItem(_blank(vae), L // 2, 1)]


def _warm_encode(vae: HierarchicalVAE) -> list[EncodeItem]:
    return [EncodeItem(image=_blank(vae), seed=0, latent_layers=1), EncodeItem(image=_blank(vae), seed=1)]


def _warm_decode(vae: HierarchicalVAE) -> list[DecodeItem]:
    z = np.zeros(vae.latent_shapes()[0], dtype=np.float32)
    return [DecodeItem(latents=(z,), seed=0), DecodeItem(latents=(z,), seed=1, temperature=0.5)]


class _Discard:
    """The sink of warm-up streams: wants every preview, keeps none."""

    def send(self, stage: StageInfo, images: dict[int, Image]) -> bool:
        return True


def _warm_stream(vae: HierarchicalVAE) -> list[StreamItem]:
    sink = _Discard()
    return [StreamItem(SampleItem(seed=0), sink, 0), StreamItem(SampleItem(seed=1, temperature=0.5), sink, 1)]


def _warm_interpolate(vae: HierarchicalVAE) -> list[InterpolateItem]:
    L = vae.hp.num_layers
    seeds = InterpolationPath(Endpoint(0), Endpoint(1), layers=L, seed=2)
    images = InterpolationPath(Endpoint(0, _blank(vae)), Endpoint(1), layers=L // 2, seed=2, temperature=0.5)
    return [InterpolateItem(seeds, 0.0), InterpolateItem(seeds, 0.5), InterpolateItem(images, 1.0)]


SAMPLE = Operation[SampleItem, Image]("sample", run_sample, _warm_sample)
RECONSTRUCT = Operation[ReconstructItem, ReconstructResult](
    "reconstruct", run_reconstruct, _warm_reconstruct, "any"
)
ENCODE = Operation[EncodeItem, EncodeResult]("encode", run_encode, _warm_encode, "any")
DECODE = Operation[DecodeItem, Image]("decode", run_decode, _warm_decode)
SAMPLE_STREAM = Operation[StreamItem, Image]("sample_stream", run_sample_stream, _warm_stream)
INTERPOLATE = Operation[InterpolateItem, Image]("interpolate", run_interpolate, _warm_interpolate)
UPSCALE = Operation[UpscaleItem, Image]("upscale", run_upscale, _warm_upscale, "super_resolution")

# Every operation, in the order their batchers start and their warm-up batches run.
OPERATIONS: tuple[Operation[Any, Any], ...] = (
    SAMPLE, RECONSTRUCT, ENCODE, DECODE, SAMPLE_STREAM, INTERPOLATE, UPSCALE,
)  # fmt: skip
