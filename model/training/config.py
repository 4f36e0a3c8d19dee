"""Training configuration: `TrainConfig`, and the command line generated from its fields and from
HParams' (so each option is declared once, with its help, in its dataclass).

A value comes from the command line, else from the preset's training defaults (model.presets), else
from the field's default here. Architecture flags (`--width`, `--dec-blocks`, ...) override the
preset's HParams fields.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..hparams import HParams, param
from ..presets import PRESETS
from .data import DATA_FORMATS

if TYPE_CHECKING:
    from .data import ImageSet


@dataclass
class TrainConfig:
    """Every option of the trainer, grouped as `--help` shows them."""

    # --- data and output ---
    data: str = param(
        "mnist",
        "'mnist' (the bundled demo digits), a folder of PNG/JPEG images (one subfolder per class gives "
        "labels), a CIFAR-10 python-batches folder, or an official .npy array",
        group="data and output",
    )
    data_format: str = param("auto", "force the data format", group="data and output", choices=DATA_FORMATS)
    data_pool: bool = param(
        False,
        "average-pool larger images to the model's --image-size (an integer factor), e.g. the 32x32 "
        "digits to 16x16 for a cascade's base model",
        group="data and output",
    )
    test_data: str | None = param(
        None,
        "separate test folder or .npy; without it a folder or an .npy gets a seeded hold-out, "
        "mnist and CIFAR-10 their own test split",
        group="data and output",
    )
    holdout: int = param(
        5000, "images held out for testing without --test-data (at most 10%%)", group="data and output"
    )
    out: str = param("runs/mnist", "run folder: checkpoint, logs, samples, model/", group="data and output")
    resume: str | None = param(
        None,
        "resume from --out's checkpoint.pt (or the given checkpoint or run folder); with no checkpoint "
        "yet it starts fresh",
        group="data and output",
        nargs="?",
        const="auto",
    )
    device: str | None = param(
        None, "cpu, cuda or cuda:N; none: cuda when available, else cpu", group="data and output"
    )
    seed: int = param(0, "random seed", group="data and output")
    # --- architecture: a preset, and overrides of its HParams fields (generated flags) ---
    preset: str = param("mnist", "architecture and training defaults", group="architecture", choices=PRESETS)
    architecture: dict[str, Any] = field(default_factory=dict)
    # --- optimisation ---
    steps: int | None = param(
        None, "updates to run (without it: --epochs, else one epoch)", group="optimisation"
    )
    epochs: float | None = param(None, "length in epochs when --steps is not given", group="optimisation")
    batch_size: int = param(8, "images per process, as the official n_batch", group="optimisation")
    lr: float = param(2e-4, "peak learning rate", group="optimisation")
    lr_schedule: str = param(
        "constant",
        "after warm-up: constant (official) or cosine down to --min-lr",
        group="optimisation",
        choices=("constant", "cosine"),
    )
    min_lr: float = param(0.0, "end of the cosine decay", group="optimisation")
    warmup_steps: int = param(100, "linear warm-up of the learning rate", group="optimisation")
    optimizer: str = param("adamw", "", group="optimisation", choices=("adamw", "adamax"))
    wd: float = param(0.01, "weight decay", group="optimisation")
    beta1: float = param(0.9, "", group="optimisation")
    beta2: float = param(0.9, "the official default (not 0.999)", group="optimisation")
    grad_clip: float = param(200.0, "clip the gradient norm at this", group="optimisation")
    skip_threshold: float = param(
        400.0,
        "skip updates whose pre-clip gradient norm reaches this (0 = never; non-finite ones always)",
        group="optimisation",
    )
    ema_rate: float = param(0.999, "decay of the weights' moving average (what is evaluated and exported)",
                            group="optimisation")  # fmt: skip
    # Off by default: the official recipe's fixed rate, so recorded commands train the same weights.
    ema_warmup: bool = param(
        False,
        "moving average's rate min(--ema-rate, (1+u)/(10+u)) at update u, so a short run does not "
        "export a share of its initial random weights",
        group="optimisation",
    )
    amp: str = param(
        "none",
        "mixed precision on CUDA (ignored on CPU)",
        group="optimisation",
        choices=("none", "bf16", "fp16"),
    )
    kl_schedule: str = param(
        "none",
        "KL reweighting by an information schedule (none = the plain ELBO; shifted_exp: shares growing "
        "exponentially towards the last layers; constant_per: shares proportional to resolution, the "
        "super-resolution recipe)",
        group="optimisation",
        choices=("none", "shifted_exp", "constant_per"),
    )
    label_dropout: float = param(
        0.1, "probability of the null label, for classifier-free guidance", group="optimisation"
    )
    # --- feedback ---
    log_every: int = param(50, "log line every N steps", group="feedback")
    eval_every: int = param(1000, "test bits/dim every N steps, 0 = only at the end", group="feedback")
    sample_every: int = param(2000, "sample grids every N steps", group="feedback")
    checkpoint_every: int = param(500, "write checkpoint.pt every N steps", group="feedback")
    sample_temperature: float = param(0.8, "temperature of the per-class grids", group="feedback")
    sample_guidance: float = param(1.0, "guidance weight of the guided per-class grid", group="feedback")
    tensorboard: bool = param(
        False,
        "also log to TensorBoard under --out's tensorboard/: losses, bits/dim, skipped updates, learning "
        "rate, test bits/dim, sample grids (needs the tensorboard extra)",
        group="feedback",
    )


# Where the trainer's default for an HParams field is not simply the preset's value.
ARCHITECTURE_NOTES = {
    "num_classes": "default: the data's class count for a conditional preset with labelled data, else 0",
    "dataset": "default: the preset's, or mnist for the demo digits",
}


def build_hparams(cfg: TrainConfig, train: ImageSet) -> HParams:
    """The preset's architecture with the config's overrides, fitted to the training data."""
    hp = HParams.preset(cfg.preset)
    overrides = dict(cfg.architecture)
    if cfg.data_format == "mnist" or cfg.data == "mnist":
        overrides.setdefault("dataset", "mnist")
    if "num_classes" not in overrides:
        # A conditional preset takes its class count from labelled data; unlabelled data -> unconditional.
        overrides["num_classes"] = train.num_classes if hp.conditional and train.labels is not None else 0
    return hp.replace(**overrides)


def train_config(given: dict[str, Any]) -> TrainConfig:
    """A config from explicitly given values over the preset's training defaults over the fields'."""
    preset = given.get("preset", TrainConfig.preset)
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    return TrainConfig(**{**PRESETS[preset].training, **given})


# --------------------------------------------------------------------------------------------
# The command line, generated from the fields
# --------------------------------------------------------------------------------------------


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_field(
    group: argparse._ArgumentGroup, f: dataclasses.Field, kind: type, help: str, dest: str
) -> None:
    meta = {k: v for k, v in f.metadata.items() if k in ("choices", "nargs", "const")}
    if "choices" in meta:
        meta["choices"] = list(meta["choices"])
    if kind is bool:
        group.add_argument(_flag(f.name), dest=dest, action=argparse.BooleanOptionalAction, help=help)
    else:
        metavar = None if "choices" in meta else f.name.upper()
        group.add_argument(_flag(f.name), dest=dest, type=kind, help=help, metavar=metavar, **meta)


def _base_type(annotation: Any) -> type:
    """int for `int | None`, etc."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if args else annotation


def _preset_values(name: str) -> str:
    values = [f"{p} {preset.training[name]}" for p, preset in PRESETS.items() if name in preset.training]
    return f"; presets: {', '.join(values)}" if values else ""


def build_parser(
    prog: str = "python -m model.training.train", description: str | None = None
) -> argparse.ArgumentParser:
    """One flag per TrainConfig field and per HParams field (architecture overrides)."""
    p = argparse.ArgumentParser(
        prog=prog,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,  # only given flags reach the config
    )
    groups: dict[str, argparse._ArgumentGroup] = {}
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if "group" not in f.metadata:
            continue
        name = f.metadata["group"]
        if name not in groups:
            groups[name] = p.add_argument_group(name)
        group = groups[name]
        default = "none" if f.default is None else f.default
        help = f"{f.metadata['help']} (default: {default}{_preset_values(f.name)})".lstrip()
        _add_field(group, f, _base_type(hints[f.name]), help, f.name)
    arch = groups["architecture"]
    arch_hints = typing.get_type_hints(HParams)
    for f in dataclasses.fields(HParams):
        if f.init:
            note = ARCHITECTURE_NOTES.get(f.name, "default: the preset's")
            _add_field(
                arch, f, _base_type(arch_hints[f.name]), f"{f.metadata['help']} ({note})", f"arch.{f.name}"
            )
    return p


def parse_args(
    argv: Sequence[str], prog: str = "python -m model.training.train", description: str | None = None
) -> TrainConfig:
    """argv -> TrainConfig (exits 2 with a usage message on bad flags)."""
    parser = build_parser(prog, description)
    given = vars(parser.parse_args(argv))
    architecture = {k.removeprefix("arch."): given.pop(k) for k in list(given) if k.startswith("arch.")}
    return train_config({**given, "architecture": architecture})
