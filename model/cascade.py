"""A cascade: a base model, then super-resolution stages, each stage a model folder of its own.

Luhman & Luhman 2022 reach their best ImageNet-64 samples with a 32x32 model followed by a
32 -> 64 super-resolution VAE (HParams.low_res) that sees the first stage's image with a little
noise added. A cascade folder names its stages in config.json:

    {"format": "vdvae-serve-cascade/1",
     "cascade": [{"model": "base16", "temperature": 0.8, "guidance": [1.0, 1.0]},
                 {"model": "sr16to32", "low_res_noise": 0.1}]}

Each "model" is a model folder's path relative to the cascade folder's parent (a sibling's name);
the other keys are the stage's default options (StageOptions). CascadeStage k of an image runs on a seed
derived from the image's seed and k (`stage_seeds`), so every stage of every image depends on that
image's seed and options only, never on its batch: a server may batch each stage on its own.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from .checkpoint import CONFIG_FILE, CheckpointError, load_model, read_config_json
from .files import atomic_write_text
from .noise import derived_seed, seed_list
from .options import (
    GuidanceSpec,
    LabelSpec,
    NoiseLevelSpec,
    TemperatureSpec,
    guidance_rows,
    log_temperature,
    low_res_noise_levels,
)
from .vae import VDVAE

CASCADE_FORMAT = "vdvae-serve-cascade/1"


@dataclass(frozen=True)
class StageOptions:
    """How one stage samples; each value may also be per image, as VDVAE.sample takes it."""

    temperature: TemperatureSpec = 1.0
    guidance: GuidanceSpec = None  # (w_mean, w_var); class-conditional stages only
    low_res_noise: NoiseLevelSpec = None  # super-resolution stages: None = the model's training sigma

    @classmethod
    def from_json(cls, entry: Mapping[str, Any], where: str) -> StageOptions:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(entry) - known - {"model"})
        if unknown:
            raise CheckpointError(
                f"{where}: unknown stage option(s) {unknown}; known: model, {sorted(known)}"
            )
        values = {k: entry[k] for k in known if entry.get(k) is not None}
        if isinstance(values.get("guidance"), list):
            values["guidance"] = tuple(values["guidance"])
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        out = {"temperature": self.temperature}
        if self.guidance is not None:
            out["guidance"] = list(self.guidance) if isinstance(self.guidance, tuple) else self.guidance
        if self.low_res_noise is not None:
            out["low_res_noise"] = self.low_res_noise
        return out


@dataclass
class CascadeStage:
    name: str  # the model folder's path as config.json gives it
    vae: VDVAE
    options: StageOptions


def stage_seeds(seeds: Sequence[int], stage: int) -> list[int]:
    """Per-image seeds of stage `stage`: the images' own seeds for the base stage (so it draws what
    the base model alone draws), a seed derived from each image's seed and the stage after it."""
    return [int(s) for s in seeds] if stage == 0 else [derived_seed(s, stage) for s in seeds]


def check_stages(stages: Sequence[CascadeStage]) -> None:
    """Raise ValueError unless stage 0 is a plain model and each later stage super-resolves the
    previous one's images (its low_res is their size, same channels)."""
    if not stages:
        raise ValueError("a cascade needs at least one stage")
    if stages[0].vae.hp.low_res:
        raise ValueError(f"stage 0 ({stages[0].name}) is a super-resolution model; the base must not be")
    for prev, stage in itertools.pairwise(stages):
        p, hp = prev.vae.hp, stage.vae.hp
        if hp.low_res != p.image_size or hp.image_channels != p.image_channels:
            raise ValueError(
                f"stage {stage.name} takes {hp.low_res}x{hp.low_res}x{hp.image_channels} low-resolution "
                f"images (low_res {hp.low_res or 'none'}), but {prev.name} makes "
                f"{p.image_size}x{p.image_size}x{p.image_channels}"
            )
    for stage in stages:
        _check_options(stage)


def _check_options(stage: CascadeStage) -> None:
    """A stage's default options, checked as VDVAE.sample would check them (for one image)."""
    opts, hp = stage.options, stage.vae.hp
    try:
        log_temperature(opts.temperature, 1, hp.num_layers, torch.device("cpu"))
        if opts.guidance is not None:
            guidance_rows(hp, opts.guidance, torch.zeros(1, dtype=torch.long), 1, lambda y: y)
        if opts.low_res_noise is not None:
            if not hp.low_res:
                raise ValueError("low_res_noise is for super-resolution stages")
            low_res_noise_levels(opts.low_res_noise, hp.low_res_noise, 1, torch.device("cpu"))
    except (ValueError, TypeError) as e:
        raise ValueError(f"stage {stage.name}: {e}") from None


def run_stages(
    stages: Sequence[CascadeStage],
    n: int,
    labels: LabelSpec = None,
    seeds: int | Sequence[int] | None = None,
    options: Sequence[StageOptions | None] | None = None,
) -> list[torch.Tensor]:
    """Sample n images through every stage; the uint8 (n, H_k, W_k, C) images of each stage.

    labels go to every class-conditional stage; seeds as VDVAE.sample takes them (stage k draws
    from stage_seeds(seeds, k)); options[k], when given, replaces stage k's default options.
    """
    check_stages(stages)
    if options is not None and len(options) != len(stages):
        raise ValueError(f"got options for {len(options)} stages; the cascade has {len(stages)}")
    seeds = seed_list(seeds, n)
    out: list[torch.Tensor] = []
    for k, stage in enumerate(stages):
        opts = (options[k] if options is not None else None) or stage.options
        hp = stage.vae.hp
        out.append(
            stage.vae.sample(
                n,
                temperature=opts.temperature,
                labels=labels if hp.conditional else None,
                guidance=opts.guidance,
                seeds=stage_seeds(seeds, k),
                low_res=out[-1] if k else None,
                low_res_noise=opts.low_res_noise if k else None,
            )
        )
    return out


class Cascade:
    """Stages loaded and checked; `sample` gives the last stage's images, as VDVAE.sample does."""

    def __init__(self, stages: Sequence[CascadeStage]) -> None:
        check_stages(stages)
        self.stages = list(stages)

    def sample(
        self,
        n: int,
        labels: LabelSpec = None,
        seeds: int | Sequence[int] | None = None,
        options: Sequence[StageOptions | None] | None = None,
    ) -> torch.Tensor:
        return run_stages(self.stages, n, labels, seeds, options)[-1]


def load_cascade(folder: str | Path, device: str | torch.device | None = None) -> Cascade:
    """A cascade folder's stages, each model folder loaded with load_model; CheckpointError names
    the problem (a missing stage folder, an unknown option, stages that do not chain)."""
    folder = Path(folder)
    config = read_config_json(folder / CONFIG_FILE)
    entries = config.get("cascade")
    if not isinstance(entries, list) or not entries:
        raise CheckpointError(f"{folder / CONFIG_FILE} is not a cascade: expected a non-empty 'cascade' list")
    stages = []
    for k, entry in enumerate(entries):
        where = f"{folder / CONFIG_FILE} stage {k}"
        if not isinstance(entry, dict) or not isinstance(entry.get("model"), str):
            raise CheckpointError(f"{where}: expected an object with 'model', the stage's model folder")
        if Path(entry["model"]).is_absolute():
            raise CheckpointError(
                f"{where}: 'model' must be relative to {folder.parent}, got {entry['model']!r}"
            )
        vae = load_model(folder.parent / entry["model"], device=device)
        stages.append(CascadeStage(entry["model"], vae, StageOptions.from_json(entry, where)))
    try:
        return Cascade(stages)
    except ValueError as e:
        raise CheckpointError(f"{folder}: {e}") from None


def save_cascade_folder(folder: str | Path, stages: Sequence[CascadeStage], note: str = "") -> Path:
    """Write config.json (stage names and options) and a README.md card; the stages' model folders
    must already sit where their names point (relative to the folder's parent)."""
    check_stages(stages)
    folder = Path(folder)
    config = {
        "format": CASCADE_FORMAT,
        "cascade": [{"model": s.name, **s.options.to_json()} for s in stages],
    }
    atomic_write_text(folder / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
    lines = [f"# {folder.name}", "", "A cascade of Very Deep VAEs, run stage by stage (model.cascade).", ""]
    for k, s in enumerate(stages):
        hp, steps = s.vae.hp, s.vae.provenance.get("steps", "?")
        kind = f"super-resolution {hp.low_res} -> {hp.image_size}" if hp.low_res else f"base {hp.image_size}"
        lines.append(
            f"{k}. `{s.name}`: {kind}, {hp.num_layers} latent layers, attention {hp.attention or 'none'}, "
            f"{steps} training steps; options {json.dumps(s.options.to_json())}"
        )
    atomic_write_text(folder / "README.md", "\n".join([*lines, "", note]).rstrip() + "\n")
    return folder
