"""A request's fields -> per-image work items, checked against the model and the settings.

Everything a user can get wrong is caught here, before anything is queued, and answered with a
422 whose `errors` entries point at the field (`loc`) and say what would be accepted. The model
would raise a ValueError for most of these too, but only after the item had joined a batch. Each
endpoint family turns its own request body into items with these checks (api/*/routes.py).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from model.classes import UnknownClass, resolve_label
from model.sampling import DEFAULT, MAX_SEED

from ..batching.items import SampleItem, Temperature
from ..errors import invalid_field
from ..settings import Settings
from ..wire import tensor_from_b64
from .fields import Guidance, LatentTensor, StrictModel
from .uploads import decode_image

if TYPE_CHECKING:  # the registry loads torch; validation runs without it
    from ..registry import ServedModel


def number(x: float) -> str:
    """A number as typed: every digit that tells it apart (2.0000001, not 2), no trailing .0."""
    text = repr(float(x))
    return text[:-2] if text.endswith(".0") else text


def seeds_for(seed: int | None, n: int) -> list[int]:
    """seed, seed + 1, ... (a random 32-bit start when None, so it is easy to type back in)."""
    start = secrets.randbelow(2**32) if seed is None else seed
    if start + n - 1 > MAX_SEED:
        raise invalid_field("seed", f"seed + n - 1 must be at most {MAX_SEED}")
    return [start + i for i in range(n)]


def temperature_for(value: float | list[float] | None, model: ServedModel, settings: Settings) -> Temperature:
    """The request's temperature, checked; omitted (None): the model's recommended one."""
    if value is None:
        return model.vae.sampling.temperature
    lo, hi = settings.min_temperature, settings.max_temperature
    values = [value] if isinstance(value, float | int) else value
    L = model.num_layers
    if not isinstance(value, float | int) and len(values) != L:
        raise invalid_field(
            "temperature",
            f"got {len(values)} temperatures but model {model.name!r} has {L} latent layers; "
            f"give one float, or {L} (one per layer, top-down)",
        )
    for t in values:
        if not lo <= t <= hi:
            raise invalid_field(
                "temperature", f"temperature {number(t)} is out of range [{number(lo)}, {number(hi)}]"
            )
    return float(value) if isinstance(value, float | int) else tuple(float(t) for t in values)


def label_for(label: int | str | None, model: ServedModel) -> int | None:
    """A request's label (an index or a class name) as an index, checked against the model."""
    hp = model.hp
    if label is None:
        return None
    if not hp.conditional:
        raise invalid_field("label", f"model {model.name!r} is unconditional: omit label (and guidance)")
    try:
        label = resolve_label(label, model.vae.classes, hp.num_classes)
    except UnknownClass as e:
        raise invalid_field("label", f"model {model.name!r}: {e}") from None
    if label >= hp.num_classes:
        raise invalid_field(
            "label",
            f"label {label} is out of range: model {model.name!r} has classes 0..{hp.num_classes - 1}",
        )
    return label


def guidance_for(
    guidance: Guidance | None, labelled: bool, model: ServedModel, settings: Settings
) -> tuple[float, float] | None:
    """Checked guidance weights; `labelled`: the images get labels (given, or from their seeds)."""
    if guidance is None:
        return None
    if not model.hp.conditional:
        raise invalid_field(
            "guidance", f"model {model.name!r} is unconditional: guidance needs a class-conditional model"
        )
    if not labelled:
        raise invalid_field("guidance", "guidance needs a label: it steers the draw towards that class")
    for name in ("mean", "variance"):
        w = getattr(guidance, name)
        if w > settings.max_guidance:
            limit = number(settings.max_guidance)
            raise invalid_field("guidance", f"guidance.{name} {number(w)} is above the limit {limit}")
    return (guidance.mean, guidance.variance)


def timeout_s(timeout_ms: int | None, settings: Settings) -> float:
    """The request's deadline as a duration: the client may shorten the default, never extend it."""
    default = settings.request_timeout_s
    return default if timeout_ms is None else min(default, timeout_ms / 1000.0)


# --------------------------------------------------------------------------------------------
# Items
# --------------------------------------------------------------------------------------------


def sampling_for(
    req: StrictModel,
    model: ServedModel,
    settings: Settings,
    seeds: list[int],
) -> list[SampleItem]:
    """Each image's seed, temperature, label and guidance: what the request gives (checked), and the
    model's sampling defaults for what it leaves out (VDVAE.sampling_options: for a class-conditional
    model, each image's label from its own seed). Every endpoint that samples from the prior takes
    its options from here, so defaults and the label rule are the same everywhere.

    `req` needs the fields temperature, label and guidance (/sample, /decode, /upscale); a field
    counts as left out when it is absent from the JSON, so an explicit `"label": null` is the
    unconditional prior and an explicit `"guidance": null` no guidance.
    """
    given = req.model_fields_set
    label = label_for(req.label, model) if "label" in given else DEFAULT
    labelled = label is not None and (label is not DEFAULT or model.vae.sampling.label == "seed")
    return sampling_items(
        model,
        seeds,
        labels=label,
        temperature=temperature_for(req.temperature, model, settings),
        guidance=guidance_for(req.guidance, labelled, model, settings) if "guidance" in given else DEFAULT,
    )


def sampling_items(
    model: ServedModel,
    seeds: list[int],
    labels: object = DEFAULT,
    temperature: object = DEFAULT,
    guidance: object = DEFAULT,
) -> list[SampleItem]:
    """One SampleItem per seed from checked options (each may be DEFAULT: the model's sampling
    default; labels also None, one label, or one per seed). Guidance goes to labelled images only."""
    opts = model.vae.sampling_options(seeds, temperature=temperature, labels=labels, guidance=guidance)
    labels = opts["labels"] if isinstance(opts["labels"], list) else [opts["labels"]] * len(seeds)
    return [
        SampleItem(
            seed=s,
            temperature=opts["temperature"],
            label=y,
            guidance=opts["guidance"] if y is not None else None,
        )
        for s, y in zip(seeds, labels)
    ]


def within_image_limit(field: str, count: int, settings: Settings) -> None:
    """The images a request asks for (n, steps), against the service's limit per request."""
    if count > settings.max_images_per_request:
        raise invalid_field(
            field,
            f"{field}={count} is above this service's limit of {settings.max_images_per_request} images a "
            "request",
        )


def layers_for(field: str, layers: int | None, model: ServedModel) -> int:
    """A count of top latent layers (all of them when None), checked against the model."""
    L = model.num_layers
    if layers is None:
        return L
    if layers > L:
        raise invalid_field(
            field, f"{field}={layers} is out of range: model {model.name!r} has {L} latent layers (0..{L})"
        )
    return layers


def image_for(data: bytes, model: ServedModel, settings: Settings, size: int | None = None) -> np.ndarray:
    """An uploaded image of the model's size (or `size`: a super-resolution model's low_res) and
    channels, or the 422 invalid-image problem naming what was expected."""
    size = model.hp.image_size if size is None else size
    return decode_image(data, size, model.hp.image_channels, settings)


def latents_for(tensors: Sequence[LatentTensor], model: ServedModel) -> tuple[np.ndarray, ...]:
    """Decode base64 float32 tensors and check them against the model's top latent shapes."""
    shapes = model.vae.latent_shapes()
    if len(tensors) > len(shapes):
        raise invalid_field(
            "latents", f"got {len(tensors)} latent layers but model {model.name!r} has {len(shapes)}"
        )
    out = []
    for i, (t, shape) in enumerate(zip(tensors, shapes)):
        where = f"latents.{i}"
        if t.layer != i:
            raise invalid_field(
                where, f"latents must be the top layers in order: entry {i} has layer {t.layer}, expected {i}"
            )
        if tuple(t.shape) != tuple(shape):
            raise invalid_field(
                where, f"layer {i} of model {model.name!r} has shape {list(shape)}, got {t.shape}"
            )
        try:
            z = tensor_from_b64(t.data, shape)
        except ValueError as e:
            raise invalid_field(where, str(e)) from None
        if not np.isfinite(z).all():
            raise invalid_field(where, "latents must be finite (no NaN or infinity)")
        out.append(z)
    return tuple(out)
