"""Checkpoints: our folder format, the released files of both families, and clear errors for bad ones.

Our format is a folder:
  model.safetensors  the EMA weights the service uses (safetensors: loading runs no code)
  config.json        {"format": ..., "family": ..., "hparams": {...}, "sampling": {...},
                      "classes": [...], "provenance": {...}}
                     ("family": model.families, "vdvae" when absent; "hparams": the family's
                     configuration; "sampling": the defaults of model.sampling, optional;
                     "classes": a class-conditional model's class names, optional)
  README.md          the model card
Released state dicts, openai/vdvae's `*-model-ema.th` / `*-model.th` (with or without DDP's
`module.` prefix) and visual-vae's `*_ema_weights.pt`, load with `torch.load(weights_only=True)`,
given a preset or inferred from their tensor shapes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .blockstrings import HParamsError
from .classes import ClassNames, check_classes
from .families import FAMILIES, VDVAE_FAMILY, Family, family_of_state_dict, get_family
from .files import atomic_write, atomic_write_text
from .hierarchical import HierarchicalVAE
from .hparams import HParams
from .inference import resolve_device
from .sampling import SamplingDefaults
from .visual_vae import VisualVAEConfig

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


def _shapes(family: Family, config: Any) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        vae = family.build(config)
    return {k: tuple(v.shape) for k, v in vae.state_dict().items()}


def fit_encoder_blocks(hp: HParams, sd: Mapping[str, torch.Tensor]) -> HParams:
    """`hp` with as many encoder blocks as `sd` holds, when it holds fewer than hp builds and the
    missing ones are trailing blocks without down-sampling: openai/vdvae's released FFHQ-1024 model
    was trained with two blocks fewer at resolution 1 than its published hyperparameters build."""
    indices = {int(k.split(".")[2]) for k in sd if k.startswith("encoder.enc_blocks.")}
    have = max(indices) + 1 if indices else 0
    layers = hp.enc_layers
    if not 0 < have < len(layers) or any(down is not None for _, down in layers[have:]):
        return hp
    return hp.replace(enc_blocks=block_string(layers[:have]))


def block_string(layers: list[tuple[int, int | None]]) -> str:
    """Parsed encoder blocks back to an official block string (runs of plain blocks as RxN)."""
    tokens: list[str] = []
    count = 0
    for i, (res, down) in enumerate(layers):
        if down is not None:
            tokens.append(f"{res}d{down}")
            continue
        count += 1
        last = i + 1 == len(layers) or layers[i + 1] != (res, None)
        if last:
            tokens.append(f"{res}x{count}")
            count = 0
    return ",".join(tokens)


def _fitted(family: Family, config: Any, sd: Mapping[str, torch.Tensor]) -> Any:
    return fit_encoder_blocks(config, sd) if isinstance(config, HParams) else config


def fitting_presets(sd: Mapping[str, torch.Tensor], family: Family | None = None) -> list[tuple[Family, str]]:
    """(family, preset) pairs whose architecture has exactly the keys and shapes of `sd`: the presets
    of `family`, else of the family its keys show."""
    family = family or family_of_state_dict(sd)
    if family is None:
        return []
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    return [
        (family, name)
        for name in family.presets
        if _shapes(family, _fitted(family, family.preset(name), sd)) == shapes
    ]


def _fit_hint(sd: Mapping[str, torch.Tensor], family: Family) -> str:
    """Which presets of the family would fit (or how to give another architecture)."""
    own = [name for _, name in fitting_presets(sd, family)]
    if own:
        return f"presets that fit this checkpoint: {', '.join(own)}"
    return "no preset fits this checkpoint (a model trained with another configuration: give its config)"


def _other_family(sd: Mapping[str, torch.Tensor], family: Family, source: str) -> str | None:
    """The error for a file of the other family, with the flags that would read it."""
    other = family_of_state_dict(sd)
    if other is None or other is family:
        return None
    fits = [name for _, name in fitting_presets(sd, other)]
    flags = f"--family {other.name}" + (f" --preset {fits[0]}" if len(fits) == 1 else "")
    also = f" (presets that fit: {', '.join(fits)})" if len(fits) > 1 else ""
    return (
        f"{source} holds a {other.name} model ({other.source}), not a {family.name} one: "
        f"convert it with {flags}{also}"
    )


def check_state_dict(
    sd: Mapping[str, torch.Tensor], config: Any, source: str, what: str, family: Family = VDVAE_FAMILY
) -> None:
    """Raise CheckpointError naming the first mismatching keys and the presets that would fit."""
    expected = _shapes(family, config)
    got = {k: tuple(v.shape) for k, v in sd.items()}
    # Shape mismatches first: they say the most about which architecture the file holds.
    problems = [
        f"{k}: checkpoint {got[k]} vs model {v}" for k, v in expected.items() if k in got and got[k] != v
    ]
    problems += [f"missing {k}" for k in expected if k not in got]
    problems += [f"unexpected {k}" for k in got if k not in expected]
    if problems:
        wrong_family = _other_family(sd, family, source)
        if wrong_family:
            raise CheckpointError(wrong_family)
        shown = "; ".join(problems[:5]) + (f"; ... ({len(problems)} mismatches)" if len(problems) > 5 else "")
        raise CheckpointError(f"{source} does not match {what}: {shown}. {_fit_hint(sd, family)}")
    for k, v in sd.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise CheckpointError(f"{source}: tensor {k} has non-finite values")


# --------------------------------------------------------------------------------------------
# Loading and saving
# --------------------------------------------------------------------------------------------


def resolve_architecture(
    family: Family,
    preset: str | HParams | VisualVAEConfig | Mapping | None,
    sd: Mapping[str, torch.Tensor],
    source: str,
) -> tuple[Any, str | None]:
    """The architecture of a released file and its preset name (None when given otherwise): a preset
    name, a configuration, or their hyperparameters as a dict (openai/vdvae's hps, or visual-vae's
    config with its "model" section)."""
    if isinstance(preset, HParams | VisualVAEConfig):
        return preset, None
    try:
        if isinstance(preset, Mapping):
            if family is VDVAE_FAMILY:
                return _fitted(family, HParams.from_official(preset), sd), None
            return VisualVAEConfig.from_config(preset), None
        if preset is not None:
            return _fitted(family, family.preset(preset), sd), preset
    except HParamsError as e:
        raise CheckpointError(str(e)) from None
    fits = [name for _, name in fitting_presets(sd, family)]
    if len(fits) == 1:
        return _fitted(family, family.preset(fits[0]), sd), fits[0]
    wrong_family = _other_family(sd, family, source)
    if wrong_family:
        raise CheckpointError(wrong_family)
    raise CheckpointError(
        f"{source} is a released {family.name} checkpoint: pass preset= (one of "
        f"{', '.join(family.presets)}); "
        + (f"it fits {', '.join(fits)}" if fits else "no preset fits its shapes")
    )


def _file_family(sd: Mapping[str, torch.Tensor], family: str | None, source: str) -> Family:
    """The family to read a released file as: the one asked for, else the one its keys show."""
    if family is not None:
        try:
            return get_family(family)
        except ValueError as e:
            raise CheckpointError(str(e)) from None
    found = family_of_state_dict(sd)
    if found is None:
        raise CheckpointError(
            f"{source} has the layout of no known model family: expected an openai/vdvae state dict "
            f"({VDVAE_FAMILY.released_files}) or a visual-vae one "
            f"({FAMILIES['visual-vae'].released_files})"
        )
    return found


def load_model(
    path: str | Path,
    preset: str | HParams | VisualVAEConfig | Mapping | None = None,
    device: str | torch.device | None = None,
    family: str | None = None,
) -> HierarchicalVAE:
    """Load a model folder, or a released state dict of either family (preset given or inferred;
    the family given or read from its keys), in eval mode.

    Every failure raises CheckpointError with what was expected: a missing file, a truncated or
    corrupt one, or weights that do not fit the architecture (first mismatching keys and the
    presets that would fit, in the other family too).
    """
    path = Path(path)
    device = resolve_device(device)
    classes = None
    if path.is_dir():
        config = read_config(path)
        try:
            fam = get_family(config.get("family", VDVAE_FAMILY.name))
            hp = fam.config_from_dict(config["hparams"])
        except (HParamsError, TypeError, ValueError) as e:
            raise CheckpointError(f"{path / CONFIG_FILE}: invalid hparams: {e}") from None
        sd = read_safetensors(path / WEIGHTS_FILE)
        check_state_dict(sd, hp, str(path / WEIGHTS_FILE), f"the architecture in {CONFIG_FILE}", fam)
        provenance = config.get("provenance", {})
        sampling = read_sampling(config, hp, path / CONFIG_FILE, fam)
        classes = read_classes(config, hp, path / CONFIG_FILE)
    elif path.is_file():
        sd = read_official_state_dict(path)
        fam = _file_family(sd, family, str(path))
        hp, name = resolve_architecture(fam, preset, sd, str(path))
        what = f"the {fam.name} preset {name!r}" if name else "the given hyperparameters"
        check_state_dict(sd, hp, str(path), what, fam)
        provenance = {"source": fam.source, "file": path.name, "preset": name}
        sampling = fam.default_sampling(hp)
    else:
        raise CheckpointError(
            f"no checkpoint at {path}: expected a model folder ({WEIGHTS_FILE} + {CONFIG_FILE}) "
            f"or a released state dict ({VDVAE_FAMILY.released_files}, "
            f"{FAMILIES['visual-vae'].released_files})"
        )
    vae = fam.build(hp)
    vae.load_state_dict(sd, strict=True)
    vae.provenance = provenance
    vae.sampling = sampling
    vae.classes = classes
    return vae.to(device).eval().requires_grad_(False)


def save_model_folder(
    vae: HierarchicalVAE,
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
        "family": vae.family,
        "hparams": vae.hp.to_dict(),
        "sampling": vae.sampling.to_dict(),
        **({"classes": vae.classes.to_json()} if vae.classes is not None else {}),
        "provenance": dict(provenance),
    }
    atomic_write_text(folder / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
    atomic_write_text(
        folder / CARD_FILE, card if card is not None else default_card(vae, provenance, folder.name)
    )
    return folder


def read_classes(config: Mapping[str, Any], hp: Any, source: Path) -> ClassNames | None:
    """config.json's "classes", checked against the model's number of classes (None if absent)."""
    if config.get("classes") is None:
        return None
    try:
        classes = ClassNames.from_json(config["classes"])
        check_classes(classes, hp.num_classes, "classes")
    except ValueError as e:
        raise CheckpointError(f"{source}: {e}") from None
    return classes


def read_sampling(
    config: Mapping[str, Any], hp: Any, source: Path, family: Family = VDVAE_FAMILY
) -> SamplingDefaults:
    """config.json's "sampling" section; a folder without one gets its family's defaults."""
    if config.get("sampling") is None:
        return family.default_sampling(hp)
    try:
        return SamplingDefaults.from_dict(config["sampling"], hp)
    except (ValueError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{source}: invalid sampling defaults: {e}") from None


def write_sampling_defaults(folder: str | Path, sampling: SamplingDefaults) -> Path:
    """Replace the "sampling" section of a model folder's config.json (atomically), keeping the rest."""
    folder = Path(folder)
    config = read_config(folder)
    try:
        hp = get_family(config.get("family", VDVAE_FAMILY.name)).config_from_dict(config["hparams"])
        SamplingDefaults.from_dict(sampling.to_dict(), hp)
    except (HParamsError, ValueError) as e:
        raise CheckpointError(f"{folder}: these sampling defaults do not fit the model: {e}") from None
    config = {k: v for k, v in config.items() if k != "sampling"}
    family = {"family": config.pop("family")} if "family" in config else {}
    config = {
        "format": config.pop("format", FORMAT),
        **family,
        "hparams": config.pop("hparams"),
        "sampling": sampling.to_dict(),
        **config,
    }
    atomic_write_text(folder / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
    return folder / CONFIG_FILE


def default_card(vae: HierarchicalVAE, provenance: Mapping[str, Any], name: str) -> str:
    hp = vae.hp
    family = get_family(vae.family)
    params = sum(p.numel() for p in vae.parameters())
    classes = f"{hp.num_classes}" if hp.conditional else "unconditional"
    if vae.classes is not None:
        classes += f" (names in config.json: {', '.join(vae.classes.shown[:3])}, ...)"
    lines = [
        f"# {name}",
        "",
        f"A {family.name} checkpoint ({family.source}; {family.paper}) in the vdvae-serve folder format.",
        "",
        f"- image: {hp.image_size}x{hp.image_size}x{hp.image_channels}, dataset `{hp.dataset or 'unknown'}`",
        f"- latent layers: {hp.num_layers}, parameters: {params:,}",
        f"- output head: {hp.output_head}; classes: {classes}",
        f"- attention: {f'at resolutions {hp.attention}' if hp.attention else 'none'}",
    ]
    if hp.low_res:
        lines.append(
            f"- super-resolution from {hp.low_res}x{hp.low_res}; noise std {hp.low_res_noise} on the "
            "[-1, 1] low-res input by default when sampling"
        )
    d = vae.sampling.to_dict()
    lines.append(
        f"- sampling defaults: temperature {d['temperature']}, guidance {d['guidance'] or 'none'}, "
        f"labels {d['label']}" + (f" ({d['chosen_by']})" if d["chosen_by"] else "")
    )
    lines += ["", "## Provenance", ""]
    lines += [f"- {k}: {v}" for k, v in provenance.items() if v is not None]
    return "\n".join(lines) + "\n"
