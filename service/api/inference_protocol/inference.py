"""An inference request's tensors as the items of its entry's operation, checked per image by the
same code as /sample's, /encode's and /decode's bodies; the operation's results as output tensors."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import ValidationError

from model.sampling import MAX_SEED

from ...batching.items import DecodeItem, EncodeItem, SampleItem
from ...errors import InvalidInput, invalid_field, invalid_input
from ...inputs.body_limits import JSON_BYTES_PER_VALUE
from ...inputs.payloads import json_body, media_type
from ...inputs.validation import label_for, sampling_for, seeds_for, within_image_limit
from ...registry import ModelRegistry, ServedModel
from ...settings import Settings
from ...state import ServiceState
from ..images.bodies import SampleRequest
from .bodies import InferenceRequest
from .entries import INPUTS, Entry, entries, entry_for
from .tensors import request_arrays, split_body


@dataclass(frozen=True)
class Inference:
    entry: Entry
    request: InferenceRequest
    items: list[SampleItem] | list[EncodeItem] | list[DecodeItem]
    outputs: list[tuple[str, bool]]  # the outputs to answer, in order, and whether each is binary
    timeout_ms: int | None


def most_values(entry: Entry, settings: Settings) -> int:
    """The most JSON values a request to `entry` can need: its tensors for the most images a request
    may ask for, and the usual fields."""
    hp = entry.model.hp
    per_image = 8  # seed, label, temperature, guidance
    if entry.kind == "encode":
        per_image += hp.image_size**2 * hp.image_channels
    if entry.kind == "decode":
        per_image += sum(math.prod(s) for s in entry.model.vae.latent_shapes())
    return settings.max_json_values + settings.max_images_per_request * per_image


def inference_body_limits(registry: ModelRegistry, settings: Settings) -> dict[str, int]:
    """{path: most body bytes} of each entry's infer endpoint: its tensors as JSON text (larger than
    in binary), within max_body_bytes."""
    return {
        f"/v2/models/{name}/infer": min(
            JSON_BYTES_PER_VALUE * most_values(entry, settings), settings.max_body_bytes
        )
        for name, entry in entries(registry).items()
    }


def batch_size(arrays: dict[str, np.ndarray], per_image: tuple[str, ...]) -> int:
    """The images of the request: the rows of its per-image inputs (one-row inputs apply to all)."""
    rows = {
        name: a.shape[0] for name, a in arrays.items() if name in per_image and a.ndim and a.shape[0] != 1
    }
    if 0 in rows.values():
        raise invalid_field("inputs", "an input with no rows: a request draws at least one image")
    if len(set(rows.values())) > 1:
        listed = ", ".join(f"{name} {n}" for name, n in rows.items())
        raise invalid_field(
            "inputs", f"the inputs have different numbers of rows ({listed}); one row applies to every image"
        )
    return next(iter(rows.values()), 1)


def integers(arrays: dict[str, np.ndarray], name: str) -> np.ndarray | None:
    a = arrays.get(name)
    if a is not None and a.dtype.kind not in "iu" and not (name == "label" and a.dtype == object):
        raise invalid_field(f"inputs.{name}", f"{name} is an integer tensor (INT64), got {a.dtype}")
    return a


def floats(arrays: dict[str, np.ndarray], name: str) -> np.ndarray | None:
    a = arrays.get(name)
    if a is not None and a.dtype.kind not in "fiu":
        raise invalid_field(f"inputs.{name}", f"{name} is a float tensor (FP32)")
    return a


def row(a: np.ndarray, i: int) -> Any:
    """Image i's row of a per-image input (a one-row input: every image's)."""
    return a[0 if a.shape[0] == 1 else i]


def expect_rows(arrays: dict[str, np.ndarray], name: str, shape: tuple[int, ...]) -> None:
    """An input of one row or one per image, each row of `shape`."""
    a = arrays.get(name)
    if a is not None and (a.ndim != 1 + len(shape) or tuple(a.shape[1:]) != shape):
        rows = "[n" + "".join(f", {d}" for d in shape) + "]"
        raise invalid_field(
            f"inputs.{name}", f"{name} has shape {list(a.shape)}; it takes {rows} (n: 1 or one per image)"
        )


def image_seeds(arrays: dict[str, np.ndarray], n: int) -> list[int]:
    """Each image's seed: one per image, or the first's (image i: seed + i), or random."""
    seeds = integers(arrays, "seed")
    if seeds is None:
        return seeds_for(None, n)
    values = [int(s) for s in seeds.reshape(-1)]
    bad = [s for s in values if not 0 <= s <= MAX_SEED]
    if bad:
        raise invalid_field("inputs.seed", f"seeds are 0..{MAX_SEED}, got {bad[0]}")
    return seeds_for(values[0], n) if len(values) == 1 else values


def label_value(value: Any) -> int | str | None:
    """A label as /sample's body takes it: -1 is the unconditional prior (null); BYTES: a class name."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return None if int(value) == -1 else int(value)


def sampling_item(
    arrays: dict[str, np.ndarray], i: int, seed: int, model: ServedModel, settings: Settings
) -> SampleItem:
    """Image i's seed, label, temperature and guidance as /sample's body with that one image (the
    model's defaults for what the request leaves out)."""
    fields: dict[str, Any] = {"seed": seed}
    if (labels := integers(arrays, "label")) is not None:
        fields["label"] = label_value(row(labels, i))
    if (temperatures := floats(arrays, "temperature")) is not None:
        fields["temperature"] = float(row(temperatures, i))
    if (guidance := floats(arrays, "guidance")) is not None:
        mean, variance = (float(w) for w in row(guidance, i))
        fields["guidance"] = {"mean": mean, "variance": variance}
    try:
        (item,) = sampling_for(SampleRequest.model_validate(fields), model, settings, [seed])
    except InvalidInput as e:
        raise renamed(e, i) from None
    except ValidationError as e:
        errors = [
            {**err, "loc": ["body", "inputs", *err["loc"]], "msg": f"image {i}: {err['msg']}"}
            for err in e.errors()
        ]
        raise invalid_input(errors) from None
    return item


def renamed(e: InvalidInput, i: int) -> InvalidInput:
    """A /sample check's 422, pointed at the input and image it is about."""
    return invalid_input(
        [
            {**err, "loc": ["body", "inputs", *err["loc"][1:]], "msg": f"image {i}: {err['msg']}"}
            for err in e.extra.get("errors", [])
        ]
    )


def requested_outputs(req: InferenceRequest, entry: Entry, layers: int) -> list[tuple[str, bool]]:
    """The outputs to answer (all of the model's when none are named) and whether each is binary."""
    known = entry.outputs
    binary = bool((req.parameters or {}).get("binary_data_output", False))
    if req.outputs is None:
        return [(name, binary) for name in known if not name.startswith("z_") or int(name[2:]) < layers]
    out = []
    for o in req.outputs:
        if o.name not in known:
            raise invalid_field(
                "outputs", f"model {entry.name!r} has no output {o.name!r}; its outputs: {', '.join(known)}"
            )
        params = o.parameters or {}
        if params.get("classification"):
            raise invalid_field("outputs", "the classification extension is not supported")
        out.append((o.name, bool(params.get("binary_data", binary))))
    return out


def encoded_layers(req: InferenceRequest, entry: Entry) -> int:
    """How many top latent layers encode returns: up to the deepest z_i named, all when none are."""
    if req.outputs is None:
        return entry.model.num_layers
    named = [int(o.name[2:]) + 1 for o in req.outputs if o.name.startswith("z_") and o.name[2:].isdigit()]
    return max(named, default=0)


def latents_given(arrays: dict[str, np.ndarray], model: ServedModel, n: int) -> list[np.ndarray]:
    """decode's z_0 .. z_{k-1}: the top k layers, each (n, *its shape), finite."""
    shapes = model.vae.latent_shapes()
    k = 0
    while f"z_{k}" in arrays:
        k += 1
    extra = [
        name for name in arrays if name.startswith("z_") and not (name[2:].isdigit() and int(name[2:]) < k)
    ]
    if k == 0 or extra:
        given = ", ".join(sorted(name for name in arrays if name.startswith("z_"))) or "none"
        raise invalid_field(
            "inputs",
            f"model {model.name!r} decodes its top latent layers z_0 .. z_(k-1), 1 <= k <= {len(shapes)}; "
            f"got {given}",
        )
    out = []
    for i in range(k):
        z = floats(arrays, f"z_{i}")
        assert z is not None
        if tuple(z.shape) != (n, *shapes[i]):
            raise invalid_field(
                f"inputs.z_{i}",
                f"z_{i} has shape {list(z.shape)}; model {model.name!r} takes {[n, *shapes[i]]}",
            )
        z = z.astype(np.float32)
        if not np.isfinite(z).all():
            raise invalid_field(f"inputs.z_{i}", "latents must be finite (no NaN or infinity)")
        out.append(z)
    return out


def infer_input(
    name: str, header_length: str | None, raw: bytes, content_type: str, svc: ServiceState
) -> Inference:
    """An inference request's body -> the items of its entry's operation, checked."""
    entry = entry_for(svc, name)
    model, settings = entry.model, svc.settings
    if header_length is not None and media_type(content_type) == "application/octet-stream":
        content_type = "application/json"  # the header's; the binary data follow it
    header, binary = split_body(raw, header_length)
    req = json_body(header, content_type, InferenceRequest, settings, max_values=most_values(entry, settings))
    arrays = request_arrays(req.inputs, binary)
    known = set(INPUTS[entry.kind]) | set(entry.inputs)
    unknown = [n for n in arrays if n not in known]
    if unknown:
        listed = ", ".join(entry.inputs)
        raise invalid_field(
            "inputs", f"model {entry.name!r} has no input {unknown[0]!r}; its inputs: {listed}"
        )
    if not model.hp.conditional and {"label", "guidance"} & set(arrays):
        raise invalid_field("inputs", f"model {model.name!r} is unconditional: it takes no label or guidance")
    for option, shape in (("seed", ()), ("label", ()), ("temperature", ()), ("guidance", (2,))):
        expect_rows(arrays, option, shape)
    n = batch_size(arrays, entry.per_image)
    within_image_limit("images", n, settings)
    seeds = image_seeds(arrays, n)
    items: Any
    if entry.kind == "encode":
        items = encode_items(arrays, n, seeds, model, encoded_layers(req, entry))
    else:
        options = [sampling_item(arrays, i, seeds[i], model, settings) for i in range(n)]
        if entry.kind == "sample":
            items = options
        else:
            zs = latents_given(arrays, model, n)
            items = [
                DecodeItem(tuple(z[i] for z in zs), o.seed, o.temperature, o.label, o.guidance)
                for i, o in enumerate(options)
            ]
    timeout = (req.parameters or {}).get("timeout")  # Triton's: microseconds
    timeout_ms = None if not isinstance(timeout, int) or timeout <= 0 else max(1, math.ceil(timeout / 1000))
    return Inference(entry, req, items, requested_outputs(req, entry, encoded_layers(req, entry)), timeout_ms)


def encode_items(
    arrays: dict[str, np.ndarray], n: int, seeds: list[int], model: ServedModel, layers: int
) -> list[EncodeItem]:
    hp = model.hp
    images = arrays.get("image")
    shape = (n, hp.image_size, hp.image_size, hp.image_channels)
    if images is None:
        raise invalid_field("inputs", f"model {model.name!r} encodes the input `image`: UINT8 {list(shape)}")
    if images.dtype != np.uint8 or tuple(images.shape) != shape:
        raise invalid_field(
            "inputs.image",
            f"image is UINT8 {list(shape)} for model {model.name!r}; got {images.dtype} {list(images.shape)}",
        )
    labels = integers(arrays, "label")
    out = []
    for i in range(n):
        label = None if labels is None else label_value(row(labels, i))
        try:
            checked = label_for(label, model)
        except InvalidInput as e:
            raise renamed(e, i) from None
        out.append(EncodeItem(image=images[i], seed=seeds[i], label=checked, latent_layers=layers))
    return out


# --------------------------------------------------------------------------------------------
# Results -> output tensors
# --------------------------------------------------------------------------------------------


def output_tensors(entry: Entry, items: Any, results: list[Any]) -> dict[str, np.ndarray]:
    seeds = np.array([it.seed for it in items], dtype=np.int64)
    if entry.kind != "encode":
        labels = np.array([-1 if it.label is None else it.label for it in items], dtype=np.int64)
        return {"images": np.stack(results), "seed": seeds, "label": labels}
    out = {"seed": seeds}
    out["kl_bits"] = np.array([r.kl_bits for r in results], dtype=np.float32)
    out["bits_per_dim"] = np.array([r.elbo_bpd for r in results], dtype=np.float32)
    layers = len(results[0].latents) if results else 0
    for i in range(layers):
        out[f"z_{i}"] = np.stack([r.latents[i] for r in results]).astype(np.float32)
    return out
