"""The protocol's models: each served model's sampling, encoding and decoding as an entry of its
own (`{name}`, `{name}.encode`, `{name}.decode`), and the metadata each entry answers."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal

from ...batching.operations import DECODE, ENCODE, SAMPLE, Operation
from ...errors import ModelNotFound
from ...registry import ModelRegistry, ServedModel
from ...state import ServiceState
from .bodies import MetadataTensor, ModelMetadata

Kind = Literal["sample", "encode", "decode"]
OPERATIONS: dict[str, Operation[Any, Any]] = {"sample": SAMPLE, "encode": ENCODE, "decode": DECODE}

# The inputs with a row per image, by operation (decode's latents `z_i` too).
INPUTS: dict[Kind, tuple[str, ...]] = {
    "sample": ("seed", "label", "temperature", "guidance"),
    "encode": ("image", "seed", "label"),
    "decode": ("seed", "label", "temperature", "guidance"),
}


@dataclass(frozen=True)
class Entry:
    """A model of the protocol: an operation of a served model."""

    name: str
    model: ServedModel
    kind: Kind

    @property
    def op(self) -> Operation[Any, Any]:
        return OPERATIONS[self.kind]

    @functools.cached_property
    def metadata(self) -> ModelMetadata:
        return metadata(self)

    @functools.cached_property
    def inputs(self) -> list[str]:
        return [t.name for t in self.metadata.inputs]

    @functools.cached_property
    def outputs(self) -> list[str]:
        return [t.name for t in self.metadata.outputs]

    @functools.cached_property
    def per_image(self) -> tuple[str, ...]:
        """The inputs with a row per image."""
        return (*INPUTS[self.kind], *(f"z_{i}" for i in range(self.model.num_layers)))


# The entries of the registry last asked about: it is loaded once, and each request asks.
_entries: tuple[ModelRegistry | None, dict[str, Entry]] = (None, {})


def entries(registry: ModelRegistry) -> dict[str, Entry]:
    """The protocol's models: each served model's name (sampling), `.encode` and `.decode`, for the
    operations that serve it; a name a served model has already is that model's."""
    global _entries
    if _entries[0] is not registry:
        _entries = (registry, table(registry))
    return _entries[1]


def table(registry: ModelRegistry) -> dict[str, Entry]:
    out: dict[str, Entry] = {}
    taken = {*registry.models, *registry.cascades}
    for model in registry.models.values():
        for kind in OPERATIONS:
            name = model.name if kind == "sample" else f"{model.name}.{kind}"
            if OPERATIONS[kind].serves(model.vae) and (kind == "sample" or name not in taken):
                out[name] = Entry(name, model, kind)
    return out


def entry_for(svc: ServiceState, name: str) -> Entry:
    found = entries(svc.registry).get(name)
    if found is None:
        known = ", ".join(sorted(entries(svc.registry))) or "none"
        raise ModelNotFound(f"no model named {name!r} here; served: {known}")
    return found


# --------------------------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------------------------


def per_image_inputs(model: ServedModel) -> list[MetadataTensor]:
    """The sampling options of sample and decode, one row per image."""
    inputs = [MetadataTensor(name="seed", datatype="INT64", shape=[-1])]
    if model.hp.conditional:
        inputs.append(MetadataTensor(name="label", datatype="INT64", shape=[-1]))
    inputs.append(MetadataTensor(name="temperature", datatype="FP32", shape=[-1]))
    if model.hp.conditional:
        inputs.append(MetadataTensor(name="guidance", datatype="FP32", shape=[-1, 2]))
    return inputs


def image_outputs(model: ServedModel) -> list[MetadataTensor]:
    hp = model.hp
    outputs = [
        MetadataTensor(
            name="images", datatype="UINT8", shape=[-1, hp.image_size, hp.image_size, hp.image_channels]
        ),
        MetadataTensor(name="seed", datatype="INT64", shape=[-1]),
    ]
    if hp.conditional:
        outputs.append(MetadataTensor(name="label", datatype="INT64", shape=[-1]))
    return outputs


def latent_tensors(model: ServedModel) -> list[MetadataTensor]:
    return [
        MetadataTensor(name=f"z_{i}", datatype="FP32", shape=[-1, *shape])
        for i, shape in enumerate(model.vae.latent_shapes())
    ]


def metadata(entry: Entry) -> ModelMetadata:
    model, hp = entry.model, entry.model.hp
    if entry.kind == "sample":
        inputs, outputs = per_image_inputs(model), image_outputs(model)
    elif entry.kind == "decode":
        inputs, outputs = latent_tensors(model) + per_image_inputs(model), image_outputs(model)
    else:
        image = MetadataTensor(name="image", datatype="UINT8", shape=image_outputs(model)[0].shape)
        inputs = [image, MetadataTensor(name="seed", datatype="INT64", shape=[-1])]
        if hp.conditional:
            inputs.append(MetadataTensor(name="label", datatype="INT64", shape=[-1]))
        outputs = [
            *latent_tensors(model),
            MetadataTensor(name="kl_bits", datatype="FP32", shape=[-1, hp.num_layers]),
            MetadataTensor(name="bits_per_dim", datatype="FP32", shape=[-1]),
            MetadataTensor(name="seed", datatype="INT64", shape=[-1]),
        ]
    parameters = {"operation": entry.kind, "model": model.name, "family": model.vae.family}
    return ModelMetadata(
        name=entry.name, platform="pytorch", inputs=inputs, outputs=outputs, parameters=parameters
    )
