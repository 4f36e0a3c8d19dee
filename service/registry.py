"""The served models: every model folder under the model directory, loaded onto one device.

A model folder is `<model_dir>/<name>/` with `config.json` and `model.safetensors` (model.checkpoint);
its name is the folder name. A folder that fails to load is logged and reported by /health/ready,
and the others are still served.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from model.checkpoint import CheckpointError, load_model, model_folders
from model.hparams import HParams
from model.inference import optimize_for_inference
from model.vae import VDVAE

from .errors import ModelNotFound

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
    vae: VDVAE

    @property
    def hp(self) -> HParams:
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
            "image_size": hp.image_size,
            "image_channels": hp.image_channels,
            "num_layers": hp.num_layers,
            "latent_shapes": [list(s) for s in self.vae.latent_shapes()],
            "parameters": sum(p.numel() for p in self.vae.parameters()),
            "num_classes": hp.num_classes,
            "conditional": hp.conditional,
            "output_head": hp.output_head,
            "dataset": hp.dataset,
            "device": str(self.vae.device),
            "amp": str(self.vae.amp_dtype).removeprefix("torch.") if self.vae.amp_dtype else "none",
            "sampling": self.vae.sampling.to_dict(),
            "provenance": without_absolute_paths(self.vae.provenance),  # written by whoever trained it
        }


@dataclass
class ModelRegistry:
    """Models by name, the default one, and the folders that failed to load."""

    models: dict[str, ServedModel] = field(default_factory=dict)
    default_name: str | None = None
    errors: dict[str, str] = field(default_factory=dict)

    def get(self, name: str | None) -> ServedModel:
        """The named model (the default when None), or ModelNotFound listing what is served."""
        key = self.default_name if name is None else name
        if key is None or key not in self.models:
            known = ", ".join(sorted(self.models)) or "none"
            raise ModelNotFound(f"no model named {name!r}; served models: {known}")
        return self.models[key]


def load_registry(
    model_dir: Path, device: torch.device, amp: str, default_model: str, compile: bool = False
) -> ModelRegistry:
    """Load every model folder under model_dir (blocking: call it off the event loop), each in its
    fast inference form (model.inference: channels_last, amp on CUDA, optional torch.compile)."""
    registry = ModelRegistry()
    for folder in model_folders(model_dir):
        name = folder.name
        if not NAME_PATTERN.match(name):
            registry.errors[name] = "folder name is not a valid model name ([A-Za-z0-9._-], up to 64)"
            log.error("skipping %s: %s", folder, registry.errors[name])
            continue
        try:
            vae = load_model(folder, device=device)
        except CheckpointError as e:
            registry.errors[name] = public_message(str(e), folder)
            log.error("cannot load model %r: %s", name, e)
            continue
        optimize_for_inference(vae, amp=amp, compile=compile)
        registry.models[name] = ServedModel(name=name, vae=vae)
        log.info(
            "loaded model %r from %s: %dx%dx%d, %d latent layers, %s classes, on %s",
            name, folder, vae.hp.image_size, vae.hp.image_size, vae.hp.image_channels,
            vae.hp.num_layers, vae.hp.num_classes or "no", device,
        )  # fmt: skip
    if default_model in registry.models:
        registry.default_name = default_model
    elif registry.models:
        registry.default_name = next(iter(registry.models))
        log.warning("default model %r not found; using %r", default_model, registry.default_name)
    return registry
