"""Checkpoints: our folder format, official openai/vdvae files, and clear errors for bad ones.

Our format is a folder:
  model.safetensors  the EMA weights the service uses (safetensors: loading runs no code)
  config.json        {"format": ..., "hparams": {...}, "sampling": {...}, "provenance": {...}}
                     ("sampling": the defaults of model.sampling; optional, see SamplingDefaults)
  README.md          the model card
Official `*-model-ema.th` / `*-model.th` state dicts (with or without DDP's `module.` prefix) load
with `torch.load(weights_only=True)`, given a preset or inferred from their tensor shapes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .files import atomic_write, atomic_write_text
from .hparams import PRESETS, HParams, HParamsError
from .inference import resolve_device
from .sampling import SamplingDefaults
from .vae import VDVAE

FORMAT = "vdvae-serve/1"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CARD_FILE = "README.md"


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message says what was expected."""


# --------------------------------------------------------------------------------------------
# Reading state dicts
# --------------------------------------------------------------------------------------------


def read_official_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """An official state dict, `module.` prefix stripped. Never unpickles code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, bad pickle, or a pickle that wants to run code
        raise CheckpointError(
            f"{path} is not a readable PyTorch state dict (truncated or corrupt?): {type(e).__name__}: {e}"
        ) from None
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{path} holds a {type(sd).__name__}, expected a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"missing {path}: a model folder needs {WEIGHTS_FILE} and {CONFIG_FILE}")
    try:
        return load_file(str(path), device="cpu")
    except Exception as e:
        raise CheckpointError(
            f"{path} is not a readable safetensors file (truncated or corrupt?): {e}"
        ) from None


def model_folders(root: Path) -> list[Path]:
    """Sub-folders of `root` that hold a model folder's config.json, sorted by name."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / CONFIG_FILE).is_file())


def read_config_json(path: Path) -> dict[str, Any]:
    """A folder's config.json as a JSON object (a model's or a cascade's)."""
    if not path.is_file():
        raise CheckpointError(f"missing {path}: a model folder needs {WEIGHTS_FILE} and {CONFIG_FILE}")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} is not a model config: expected a JSON object")
    return config


def read_config(folder: Path) -> dict[str, Any]:
    path = folder / CONFIG_FILE
    config = read_config_json(path)
    if "cascade" in config:
        raise CheckpointError(
            f"{path} describes a cascade of models, not one model: load it with model.cascade.load_cascade"
        )
    if not isinstance(config.get("hparams"), dict):
        raise CheckpointError(f"{path} is not a model config: expected a JSON object with 'hparams'")
    return config


# --------------------------------------------------------------------------------------------
# Matching a state dict to an architecture
# --------------------------------------------------------------------------------------------


def _shapes(hp: HParams) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        vae = VDVAE(hp)
    return {k: tuple(v.shape) for k, v in vae.state_dict().items()}


def fitting_presets(sd: Mapping[str, torch.Tensor]) -> list[str]:
    """Presets whose architecture has exactly the keys and shapes of `sd`."""
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    return [name for name in PRESETS if _shapes(HParams.preset(name)) == shapes]


def check_state_dict(sd: Mapping[str, torch.Tensor], hp: HParams, source: str, what: str) -> None:
    """Raise CheckpointError naming the first mismatching keys and the presets that would fit."""
    expected = _shapes(hp)
    got = {k: tuple(v.shape) for k, v in sd.items()}
    # Shape mismatches first: they say the most about which architecture the file holds.
    problems = [
        f"{k}: checkpoint {got[k]} vs model {v}" for k, v in expected.items() if k in got and got[k] != v
    ]
    problems += [f"missing {k}" for k in expected if k not in got]
    problems += [f"unexpected {k}" for k in got if k not in expected]
    if problems:
        fits = fitting_presets(sd)
        hint = (
            f"presets that fit this checkpoint: {', '.join(fits)}"
            if fits
            else "no preset fits this checkpoint"
        )
        shown = "; ".join(problems[:5]) + (f"; ... ({len(problems)} mismatches)" if len(problems) > 5 else "")
        raise CheckpointError(f"{source} does not match {what}: {shown}. {hint}")
    for k, v in sd.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise CheckpointError(f"{source}: tensor {k} has non-finite values")


# --------------------------------------------------------------------------------------------
# Loading and saving
# --------------------------------------------------------------------------------------------


def _resolve_hparams(preset: str | HParams | Mapping | None, sd, source: str) -> tuple[HParams, str | None]:
    """The architecture of an official file and its preset name (None for custom hparams)."""
    if isinstance(preset, HParams):
        return preset, None
    if isinstance(preset, Mapping):
        return HParams.from_official(preset), None
    if preset is not None:
        try:
            return HParams.preset(preset), preset
        except HParamsError as e:
            raise CheckpointError(str(e)) from None
    fits = fitting_presets(sd)
    if len(fits) == 1:
        return HParams.preset(fits[0]), fits[0]
    raise CheckpointError(
        f"{source} is an official checkpoint: pass preset= (one of {', '.join(PRESETS)}); "
        + (f"it fits {', '.join(fits)}" if fits else "no preset fits its shapes")
    )


def load_model(
    path: str | Path,
    preset: str | HParams | Mapping | None = None,
    device: str | torch.device | None = None,
) -> VDVAE:
    """Load a model folder, or an official .th file (preset given or inferred), in eval mode.

    Every failure raises CheckpointError with what was expected: a missing file, a truncated or
    corrupt one, or weights that do not fit the architecture (first mismatching keys and the
    presets that would fit).
    """
    path = Path(path)
    device = resolve_device(device)
    if path.is_dir():
        config = read_config(path)
        try:
            hp = HParams.from_dict(config["hparams"])
        except (HParamsError, TypeError) as e:
            raise CheckpointError(f"{path / CONFIG_FILE}: invalid hparams: {e}") from None
        sd = read_safetensors(path / WEIGHTS_FILE)
        check_state_dict(sd, hp, str(path / WEIGHTS_FILE), f"the architecture in {CONFIG_FILE}")
        provenance = config.get("provenance", {})
        sampling = read_sampling(config, hp, path / CONFIG_FILE)
    elif path.is_file():
        sd = read_official_state_dict(path)
        hp, name = _resolve_hparams(preset, sd, str(path))
        check_state_dict(sd, hp, str(path), f"preset {name!r}" if name else "the given hyperparameters")
        provenance = {"source": "openai/vdvae", "file": path.name, "preset": name}
        sampling = SamplingDefaults.for_model(hp)
    else:
        raise CheckpointError(
            f"no checkpoint at {path}: expected a model folder ({WEIGHTS_FILE} + {CONFIG_FILE}) "
            "or an official *-model-ema.th / *-model.th file"
        )
    vae = VDVAE(hp)
    vae.load_state_dict(sd, strict=True)
    vae.provenance = provenance
    vae.sampling = sampling
    return vae.to(device).eval().requires_grad_(False)


def save_model_folder(
    vae: VDVAE,
    folder: str | Path,
    provenance: Mapping[str, Any],
    card: str | None = None,
) -> Path:
    """Write model.safetensors, config.json and README.md (each atomically) into `folder`."""
    folder = Path(folder)
    sd = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in vae.state_dict().items()}
    atomic_write(folder / WEIGHTS_FILE, lambda tmp: save_file(sd, tmp, metadata={"format": FORMAT}))
    config = {
        "format": FORMAT,
        "hparams": vae.hp.to_dict(),
        "sampling": vae.sampling.to_dict(),
        "provenance": dict(provenance),
    }
    atomic_write_text(folder / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
    atomic_write_text(
        folder / CARD_FILE, card if card is not None else default_card(vae, provenance, folder.name)
    )
    return folder


def read_sampling(config: Mapping[str, Any], hp: HParams, source: Path) -> SamplingDefaults:
    """config.json's "sampling" section; a folder without one gets SamplingDefaults.for_model."""
    if config.get("sampling") is None:
        return SamplingDefaults.for_model(hp)
    try:
        return SamplingDefaults.from_dict(config["sampling"], hp)
    except (ValueError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{source}: invalid sampling defaults: {e}") from None


def write_sampling_defaults(folder: str | Path, sampling: SamplingDefaults) -> Path:
    """Replace the "sampling" section of a model folder's config.json (atomically), keeping the rest."""
    folder = Path(folder)
    config = read_config(folder)
    try:
        SamplingDefaults.from_dict(sampling.to_dict(), HParams.from_dict(config["hparams"]))
    except (HParamsError, ValueError) as e:
        raise CheckpointError(f"{folder}: these sampling defaults do not fit the model: {e}") from None
    config = {k: v for k, v in config.items() if k != "sampling"}
    config = {
        "format": config.pop("format", FORMAT),
        "hparams": config.pop("hparams"),
        "sampling": sampling.to_dict(),
        **config,
    }
    atomic_write_text(folder / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
    return folder / CONFIG_FILE


def default_card(vae: VDVAE, provenance: Mapping[str, Any], name: str) -> str:
    hp = vae.hp
    params = sum(p.numel() for p in vae.parameters())
    lines = [
        f"# {name}",
        "",
        "A Very Deep VAE checkpoint in the vdvae-serve folder format.",
        "",
        f"- image: {hp.image_size}x{hp.image_size}x{hp.image_channels}, dataset preprocessing `{hp.dataset}`",
        f"- latent layers: {hp.num_layers}, parameters: {params:,}",
        f"- output head: {hp.output_head}; classes: {hp.num_classes or 'unconditional'}",
        f"- attention: {f'at resolutions {hp.attention}' if hp.attention else 'none'}",
    ]
    if hp.low_res:
        lines.append(
            f"- super-resolution from {hp.low_res}x{hp.low_res} (the image average-pooled); noise std "
            f"{hp.low_res_noise} on the [-1, 1] low-res input in training, the default at sampling"
        )
    lines += [
        "",
        "## Provenance",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in provenance.items()]
    return "\n".join(lines) + "\n"
