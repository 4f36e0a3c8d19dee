"""The served models: every model folder under the model directory, loaded onto one device.

A model folder is `<model_dir>/<name>/` with `config.json` and `model.safetensors` (model.checkpoint);
its name is the folder name. A folder that fails to load is logged and reported by /health/ready,
and the others are still served. A cascade folder (model.cascade) is served under its folder name
too: its stages are the served models of the folders it names (so they share their batches with
requests made to them directly), or, for a stage folder that is not served on its own (inside the
cascade folder), a stage model of its own named `<cascade>.stage<k>`, listed nowhere but batched
like the others.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from model.cascade import CascadeStage, StageOptions, checked_cascade, is_cascade_folder, stage_entries
from model.checkpoint import CheckpointError, load_model, model_folders
from model.config import ModelConfig
from model.hierarchical import HierarchicalVAE
from model.inference import InferenceForm

from .errors import ModelNotFound, invalid_input

log = logging.getLogger("service.registry")

# Names appear in URLs (/v1/models/{name}) and metric labels: keep them plain.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# An absolute path in a message: a slash after a space, quote or the start, up to the next delimiter.
ABSOLUTE_PATH = re.compile(r"(?<![\w.~-])/[^\s'\":;,()]*")


def without_absolute_paths(value: Any) -> Any:
    """`value` (a string, or JSON-like lists and dicts of them) with each absolute path cut to its
    last part: paths tell an attacker about the machine (the log keeps them)."""
    if isinstance(value, str):
        return ABSOLUTE_PATH.sub(lambda m: Path(m.group()).name or "/", value)
    if isinstance(value, list):
        return [without_absolute_paths(v) for v in value]
    if isinstance(value, dict):
        return {k: without_absolute_paths(v) for k, v in value.items()}
    return value


def public_message(message: str, folder: Path) -> str:
    """An error as clients see it (/health/ready): paths relative to the model directory."""
    for path in sorted({str(folder.resolve()), str(folder.absolute()), str(folder)}, key=len, reverse=True):
        message = message.replace(path, folder.name)
    return without_absolute_paths(message)


@dataclass
class ServedModel:
    """One loaded model and the facts about it that requests are validated against."""

    name: str
    vae: HierarchicalVAE

    @property
    def hp(self) -> ModelConfig:
        return self.vae.hp

    @property
    def num_layers(self) -> int:
        return self.vae.hp.num_layers

    def info(self) -> dict[str, Any]:
        """Metadata for GET /v1/models/{name}."""
        hp = self.vae.hp
        return {
            "id": self.name,
            "object": "model",
            "family": self.vae.family,
            "image_size": hp.image_size,
            "image_channels": hp.image_channels,
            "num_layers": hp.num_layers,
            "latent_shapes": [list(s) for s in self.vae.latent_shapes()],
            "parameters": sum(p.numel() for p in self.vae.parameters()),
            "num_classes": hp.num_classes,
            "classes": self.vae.classes.shown if self.vae.classes is not None else None,
            "low_res": hp.low_res,
            "low_res_noise": hp.low_res_noise if hp.low_res else 0.0,
            "attention": hp.attention,
            "conditional": hp.conditional,
            "output_head": hp.output_head,
            "dataset": hp.dataset,
            "device": str(self.vae.device),
            "amp": str(self.vae.amp_dtype).removeprefix("torch.") if self.vae.amp_dtype else "none",
            "sampling": self.vae.sampling.to_dict(),
            "provenance": without_absolute_paths(self.vae.provenance),  # written by whoever trained it
        }


@dataclass
class ServedCascade:
    """A cascade: its stages' served models (base first) and the cascade's options for each."""

    name: str
    stages: list[ServedModel]
    options: list[StageOptions]
    listed: list[bool]  # whether each stage's model is also served (and listed) on its own

    def info(self) -> dict[str, Any]:
        """Metadata for GET /v1/models/{name}: the final images' shape, the base stage's classes and
        sampling defaults, and each stage."""
        base, last = self.stages[0].info(), self.stages[-1].info()
        stages = [
            {
                "index": k,
                "model": m.name,
                "served": listed,
                "image_size": m.hp.image_size,
                "low_res": m.hp.low_res,
                "num_layers": m.num_layers,
                "conditional": m.hp.conditional,
                "sampling": m.vae.sampling.to_dict(),
                "options": opts.to_json(),
            }
            for k, (m, opts, listed) in enumerate(zip(self.stages, self.options, self.listed))
        ]
        return {
            **{k: last[k] for k in ("image_size", "image_channels", "output_head", "device", "amp")},
            **{
                k: base[k] for k in ("family", "num_classes", "classes", "conditional", "dataset", "sampling")
            },
            "id": self.name,
            "object": "cascade",
            "num_layers": sum(m.num_layers for m in self.stages),
            "latent_shapes": [],  # no one latent space: /encode and /decode take the stages' models
            "parameters": sum(m.info()["parameters"] for m in self.stages),
            "provenance": {},
            "stages": stages,
        }


@dataclass
class ModelRegistry:
    """Models and cascades by name, the default one, the cascades' own stage models, and the
    folders that failed to load."""

    models: dict[str, ServedModel] = field(default_factory=dict)
    default_name: str | None = None
    errors: dict[str, str] = field(default_factory=dict)
    cascades: dict[str, ServedCascade] = field(default_factory=dict)
    stage_models: dict[str, ServedModel] = field(default_factory=dict)  # stages served by no other name

    def served(self) -> list[ServedModel]:
        """Every model that needs batchers: the listed ones and the cascades' own stages."""
        return [*self.models.values(), *self.stage_models.values()]

    def get_any(self, name: str | None) -> ServedModel | ServedCascade:
        """The named model or cascade (the default when None), or ModelNotFound listing them."""
        key = self.default_name if name is None else name
        if key in self.models:
            return self.models[key]
        if key in self.cascades:
            return self.cascades[key]
        known = ", ".join(sorted([*self.models, *self.cascades])) or "none"
        raise ModelNotFound(f"no model named {name!r}; served models: {known}")

    def get(self, name: str | None) -> ServedModel:
        """The named model (the default when None): ModelNotFound, or a 422 for a cascade (only
        /sample and /sample/stream run one)."""
        found = self.get_any(name)
        if isinstance(found, ServedCascade):
            stages = ", ".join(m.name for m in found.stages)
            raise invalid_input(
                [
                    {
                        "loc": ["body", "model"],
                        "msg": f"model {found.name!r} is a cascade ({stages}): POST /sample and "
                        "/sample/stream run it; this endpoint takes one of its stages' models",
                        "type": "value_error",
                    }
                ]
            )
        return found


def load_registry(
    model_dir: Path, device: torch.device, form: InferenceForm, default_model: str
) -> ModelRegistry:
    """Load every model folder under model_dir (blocking: call it off the event loop), each in the
    inference form `form` (model.inference: channels_last, amp on CUDA, optional torch.compile and
    CUDA graphs)."""
    registry = ModelRegistry()
    cascades, paths = [], {}  # cascade folders, loaded models by their folder's resolved path
    for folder in model_folders(model_dir):
        name = folder.name
        if not NAME_PATTERN.match(name):
            registry.errors[name] = "folder name is not a valid model name ([A-Za-z0-9._-], up to 64)"
            log.error("skipping %s: %s", folder, registry.errors[name])
            continue
        if is_cascade_folder(folder):
            cascades.append(folder)
            continue
        try:
            vae = load_model(folder, device=device)
        except CheckpointError as e:
            registry.errors[name] = public_message(str(e), folder)
            log.error("cannot load model %r: %s", name, e)
            continue
        form.apply(vae)
        registry.models[name] = paths[folder.resolve()] = ServedModel(name=name, vae=vae)
        log.info(
            "loaded model %r from %s: %dx%dx%d, %d latent layers, %s classes, on %s",
            name, folder, vae.hp.image_size, vae.hp.image_size, vae.hp.image_channels,
            vae.hp.num_layers, vae.hp.num_classes or "no", device,
        )  # fmt: skip
    for folder in cascades:
        try:
            registry.cascades[folder.name] = load_served_cascade(folder, paths, registry, device, form)
        except CheckpointError as e:
            registry.errors[folder.name] = public_message(str(e), folder)
            log.error("cannot load cascade %r: %s", folder.name, e)
    if default_model in registry.models or default_model in registry.cascades:
        registry.default_name = default_model
    elif registry.models:
        registry.default_name = next(iter(registry.models))
        log.warning("default model %r not found; using %r", default_model, registry.default_name)
    return registry


def load_served_cascade(
    folder: Path,
    paths: dict[Path, ServedModel],
    registry: ModelRegistry,
    device: torch.device,
    form: InferenceForm,
) -> ServedCascade:
    """A cascade folder's stages: the served model of each folder it names, or a stage model of its
    own (registry.stage_models); CheckpointError when a stage cannot be loaded or they do not chain."""
    stages, listed = [], []
    entries = stage_entries(folder)
    for k, entry in enumerate(entries):
        served = paths.get(entry.path.resolve())
        listed.append(served is not None)
        if served is None:
            vae = load_model(entry.path, device=device)
            form.apply(vae)
            served = ServedModel(name=f"{folder.name}.stage{k}", vae=vae)
        stages.append(served)
    checked_cascade(folder, [CascadeStage(e.name, m.vae, e.options) for e, m in zip(entries, stages)])
    for m, is_listed in zip(stages, listed):
        if not is_listed:
            registry.stage_models[m.name] = m
    log.info("loaded cascade %r: %s", folder.name, " -> ".join(m.name for m in stages))
    return ServedCascade(folder.name, stages, [e.options for e in entries], listed)
