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

A stage gets the previous stage's 8-bit images, except a visual-vae super-resolution stage after a
model with a Gaussian head: it gets that model's raw predicted mean (unclipped, in [-1, 1] model
space), as their evaluate.py chains the released ImageNet-32 and 32 -> 64 models (`hands_raw_mean`).
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
from .heads import GaussianOutput
from .hierarchical import HierarchicalVAE
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
from .sampling import DEFAULT, Default

CASCADE_FORMAT = "vdvae-serve-cascade/1"


@dataclass(frozen=True)
class StageOptions:
    """How one stage samples; each value may also be per image, as the models' sample takes it. DEFAULT:
    the stage model's sampling default (guidance None: no guidance)."""

    temperature: TemperatureSpec | Default = DEFAULT
    guidance: GuidanceSpec | Default = DEFAULT  # (w_mean, w_var); class-conditional stages only
    low_res_noise: NoiseLevelSpec = None  # super-resolution stages: None = the model's training sigma

    @classmethod
    def from_json(cls, entry: Mapping[str, Any], where: str) -> StageOptions:
        """A config.json stage entry's options: absent keys are DEFAULT ("guidance": null is none)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(entry) - known - set(STAGE_PLACES))
        if unknown:
            raise CheckpointError(
                f"{where}: unknown stage option(s) {unknown}; known: model or folder, {sorted(known)}"
            )
        values = {k: entry[k] for k in known if k in entry}
        for k in ("temperature", "guidance"):  # the forms sample and the service take
            if isinstance(values.get(k), list):
                values[k] = tuple(float(v) if isinstance(v, int | float) else v for v in values[k])
            elif isinstance(values.get(k), int | float) and not isinstance(values.get(k), bool):
                values[k] = float(values[k]) if k == "temperature" else (float(values[k]),) * 2
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        """The options that are set (not DEFAULT), as config.json holds them."""
        out: dict[str, Any] = {}
        if self.temperature is not DEFAULT:
            out["temperature"] = self.temperature
        if self.guidance is not DEFAULT:
            g = self.guidance
            out["guidance"] = list(g) if isinstance(g, tuple) else g
        if isinstance(out.get("temperature"), tuple):
            out["temperature"] = list(out["temperature"])
        if self.low_res_noise is not None:
            out["low_res_noise"] = self.low_res_noise
        return out

    def replaced(self, given: StageOptions | None) -> StageOptions:
        """These options with each value that `given` sets (not DEFAULT / None) in its place."""
        if given is None:
            return self
        return StageOptions(
            temperature=self.temperature if given.temperature is DEFAULT else given.temperature,
            guidance=self.guidance if given.guidance is DEFAULT else given.guidance,
            low_res_noise=self.low_res_noise if given.low_res_noise is None else given.low_res_noise,
        )


# The keys of a stage entry that say where its model folder is: relative to the cascade folder's
# parent ("model", a sibling) or to the cascade folder itself ("folder", its own subfolder).
STAGE_PLACES = ("model", "folder")


@dataclass
class CascadeStage:
    name: str  # the model folder's path as config.json gives it
    vae: HierarchicalVAE
    options: StageOptions = StageOptions()
    place: str = "model"  # "model": name is relative to the cascade folder's parent; "folder": inside it


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
    """A stage's default options, checked as sample would check them (for one image)."""
    hp = stage.vae.hp
    opts = stage.vae.sampling_options([0], stage.options.temperature, None, stage.options.guidance)
    try:
        log_temperature(opts["temperature"], 1, hp.num_layers, torch.device("cpu"))
        if stage.options.guidance not in (None, DEFAULT):
            guidance_rows(hp, opts["guidance"], torch.zeros(1, dtype=torch.long), 1, lambda y: y)
        if stage.options.low_res_noise is not None:
            if not hp.low_res:
                raise ValueError("low_res_noise is for super-resolution stages")
            low_res_noise_levels(stage.options.low_res_noise, hp.low_res_noise, 1, torch.device("cpu"))
    except (ValueError, TypeError) as e:
        raise ValueError(f"stage {stage.name}: {e}") from None


def base_labels(
    stages: Sequence[CascadeStage], seeds: Sequence[int], labels: LabelSpec = DEFAULT
) -> LabelSpec:
    """The images' labels: given, or (DEFAULT) the base stage's label rule on each image's seed."""
    return stages[0].vae.sampling_options(list(seeds), labels=labels)["labels"]


def run_stages(
    stages: Sequence[CascadeStage],
    n: int,
    labels: LabelSpec = DEFAULT,
    seeds: int | Sequence[int] | None = None,
    options: Sequence[StageOptions | None] | None = None,
) -> list[torch.Tensor]:
    """Sample n images through every stage; the uint8 (n, H_k, W_k, C) images of each stage.

    labels (DEFAULT: base_labels) go to every class-conditional stage; seeds as sample takes
    them (stage k draws from stage_seeds(seeds, k)); options[k], when given, replaces what it sets
    of stage k's options.
    """
    check_stages(stages)
    if options is not None and len(options) != len(stages):
        raise ValueError(f"got options for {len(options)} stages; the cascade has {len(stages)}")
    seeds = seed_list(seeds, n)
    labels = base_labels(stages, seeds, labels)
    out: list[torch.Tensor] = []
    low_res = None  # what the next stage conditions on
    for k, stage in enumerate(stages):
        opts = stage.options.replaced(options[k] if options is not None else None)
        args = dict(
            temperature=opts.temperature,
            labels=labels if stage.vae.hp.conditional else None,
            guidance=opts.guidance,
            seeds=stage_seeds(seeds, k),
            low_res=low_res,
            low_res_noise=opts.low_res_noise if k else None,
        )
        if k + 1 < len(stages) and hands_raw_mean(stage.vae, stages[k + 1].vae):
            params = stage.vae.sample_params(n, **args)
            out.append(stage.vae.params_to_images(params, seeds=args["seeds"]))
            low_res = stage.vae.head.mean(params)
        else:
            out.append(stage.vae.sample(n, **args))
            low_res = out[-1]
    return out


def hands_raw_mean(previous: HierarchicalVAE, stage: HierarchicalVAE) -> bool:
    """Whether `stage` conditions on `previous`'s raw predicted mean rather than its 8-bit images:
    a visual-vae super-resolution model after a model with a Gaussian head (their cascade)."""
    return stage.family == "visual-vae" and isinstance(previous.head, GaussianOutput)


class Cascade:
    """Stages loaded and checked; `sample` gives the last stage's images, as a model's sample does."""

    def __init__(self, stages: Sequence[CascadeStage]) -> None:
        check_stages(stages)
        self.stages = list(stages)

    def sample(
        self,
        n: int,
        labels: LabelSpec = DEFAULT,
        seeds: int | Sequence[int] | None = None,
        options: Sequence[StageOptions | None] | None = None,
    ) -> torch.Tensor:
        return run_stages(self.stages, n, labels, seeds, options)[-1]


@dataclass(frozen=True)
class StageEntry:
    """One stage of a cascade folder's config.json: where its model folder is, and its options."""

    name: str  # the path as config.json gives it
    place: str  # "model" (relative to the cascade folder's parent) or "folder" (inside it)
    path: Path  # the model folder
    options: StageOptions


def is_cascade_folder(folder: Path) -> bool:
    """Whether folder/config.json describes a cascade (it may still be a broken one)."""
    try:
        return "cascade" in read_config_json(folder / CONFIG_FILE)
    except CheckpointError:
        return False


def stage_entries(folder: str | Path) -> list[StageEntry]:
    """A cascade folder's stages as config.json names them, checked for form (not loaded);
    CheckpointError names the problem."""
    folder = Path(folder)
    config = read_config_json(folder / CONFIG_FILE)
    entries = config.get("cascade")
    if not isinstance(entries, list) or not entries:
        raise CheckpointError(f"{folder / CONFIG_FILE} is not a cascade: expected a non-empty 'cascade' list")
    out = []
    for k, entry in enumerate(entries):
        where = f"{folder / CONFIG_FILE} stage {k}"
        places = [p for p in STAGE_PLACES if isinstance(entry, dict) and isinstance(entry.get(p), str)]
        if len(places) != 1:
            raise CheckpointError(
                f"{where}: expected an object with one of 'model' (a model folder next to the cascade "
                "folder) or 'folder' (a model folder inside it)"
            )
        place = places[0]
        name = entry[place]
        root = folder.parent if place == "model" else folder
        if Path(name).is_absolute():
            raise CheckpointError(f"{where}: {place!r} must be relative to {root}, got {name!r}")
        out.append(StageEntry(name, place, root / name, StageOptions.from_json(entry, where)))
    return out


def load_cascade(folder: str | Path, device: str | torch.device | None = None) -> Cascade:
    """A cascade folder's stages, each model folder loaded with load_model; CheckpointError names
    the problem (a missing stage folder, an unknown option, stages that do not chain)."""
    stages = [
        CascadeStage(e.name, load_model(e.path, device=device), e.options, e.place)
        for e in stage_entries(folder)
    ]
    return checked_cascade(folder, stages)


def checked_cascade(folder: str | Path, stages: Sequence[CascadeStage]) -> Cascade:
    """Cascade(stages), its ValueError as the CheckpointError of the folder."""
    try:
        return Cascade(stages)
    except ValueError as e:
        raise CheckpointError(f"{folder}: {e}") from None


def save_cascade_folder(folder: str | Path, stages: Sequence[CascadeStage], note: str = "") -> Path:
    """Write config.json (stage places and options) and a README.md card; the stages' model folders
    must already sit where their names point (a "model" stage next to the folder, a "folder" one
    inside it)."""
    check_stages(stages)
    folder = Path(folder)
    config = {
        "format": CASCADE_FORMAT,
        "cascade": [{s.place: s.name, **s.options.to_json()} for s in stages],
    }
    atomic_write_text(folder / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
    lines = [
        f"# {folder.name}",
        "",
        "A cascade of hierarchical VAEs, run stage by stage (model.cascade).",
        "",
    ]
    for k, s in enumerate(stages):
        hp, prov = s.vae.hp, s.vae.provenance
        kind = f"super-resolution {hp.low_res} -> {hp.image_size}" if hp.low_res else f"base {hp.image_size}"
        origin = (
            f"{prov['steps']} training steps" if "steps" in prov else f"from {prov.get('source', 'unknown')}"
        )
        lines.append(
            f"{k}. `{s.name}`: {s.vae.family} {kind}, {hp.num_layers} latent layers, attention "
            f"{hp.attention or 'none'}, {origin}; options {json.dumps(s.options.to_json())}"
        )
    atomic_write_text(folder / "README.md", "\n".join([*lines, "", note]).rstrip() + "\n")
    return folder
