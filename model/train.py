"""Train a Very Deep VAE on your own images.

    python -m model.train --data mnist --preset mnist --out runs/mnist          # the bundled model
    torchrun --nproc_per_node 4 -m model.train --data cifar10-batches/ --preset cifar10 --out runs/c10

Writes under --out: checkpoint.pt (atomic, resumable exactly with --resume), log.jsonl, sample
grids in samples/, rate_profile.json, and the served model folder model/ (EMA weights,
config.json, README.md), loadable by model.load_model and by the service.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import platform
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from . import distributed
from .checkpoint import atomic_write, save_model_folder
from .data import DataError, ImageData, load_split
from .evaluate import evaluate_elbo, save_sample_grids
from .hparams import PRESETS, HParams, HParamsError
from .objectives import drop_labels, information_schedule, training_loss
from .progress import JsonlLog, Progress
from .vae import LN2, VDVAE

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = "vdvae-train/1"

# Official training hyperparameters per preset (openai/vdvae hps.py); ours for tiny and mnist.
TRAIN_PRESETS: dict[str, dict] = {
    "cifar10": dict(batch_size=16, lr=2e-4, ema_rate=0.9999, grad_clip=200.0, skip_threshold=400.0),
    "imagenet32": dict(batch_size=8, lr=1.5e-4, ema_rate=0.999, grad_clip=200.0, skip_threshold=300.0),
    "imagenet64": dict(batch_size=4, lr=1.5e-4, ema_rate=0.999, grad_clip=220.0, skip_threshold=380.0),
    "ffhq256": dict(batch_size=1, lr=1.5e-4, ema_rate=0.999, grad_clip=130.0, skip_threshold=180.0),
    "ffhq1024": dict(batch_size=1, lr=7e-5, ema_rate=0.999, grad_clip=360.0, skip_threshold=500.0),
    "tiny": dict(batch_size=8, lr=2e-4, ema_rate=0.999, grad_clip=200.0, skip_threshold=400.0),
    "mnist": dict(
        batch_size=32,
        lr=1e-3,
        ema_rate=0.999,
        grad_clip=200.0,
        skip_threshold=1000.0,
        lr_schedule="cosine",
        min_lr=1e-4,
        steps=12000,
    ),
}


@dataclass
class TrainConfig:
    """Every option of `python -m model.train`; None means "the preset's value"."""

    data: str = "mnist"
    data_format: str = "auto"
    test_data: str | None = None
    holdout: int = 5000  # test images held out of a single folder/.npy source without --test-data
    preset: str = "mnist"
    out: str = "runs/mnist"
    resume: str | None = None
    device: str | None = None
    seed: int = 0
    # architecture overrides (HParams fields)
    width: int | None = None
    zdim: int | None = None
    enc_blocks: str | None = None
    dec_blocks: str | None = None
    custom_width_str: str | None = None
    bottleneck_multiple: float | None = None
    num_mixtures: int | None = None
    no_bias_above: int | None = None
    num_classes: int | None = None
    output_head: str | None = None
    sigma_q: float | None = None
    # optimisation
    steps: int | None = None
    epochs: float | None = None
    batch_size: int | None = None  # per process, as the official n_batch
    lr: float | None = None
    lr_schedule: str | None = None  # "constant" after warm-up (official) or "cosine" down to min_lr
    min_lr: float | None = None
    warmup_steps: int = 100
    optimizer: str = "adamw"
    wd: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.9  # the official default (not 0.999)
    grad_clip: float | None = None
    skip_threshold: float | None = None  # skip updates whose pre-clip grad norm reaches this; 0 = never
    ema_rate: float | None = None
    amp: str = "none"  # CUDA only: bf16 or fp16 autocast
    kl_schedule: str = "none"  # "shifted_exp": KL reweighting by the information schedule
    label_dropout: float = 0.1  # labels replaced by the null label, for classifier-free guidance
    # feedback
    log_every: int = 50
    eval_every: int = 1000
    sample_every: int = 2000
    checkpoint_every: int = 500
    sample_temperature: float = 0.8
    sample_guidance: float = 1.0

    def resolved(self) -> TrainConfig:
        """Fill None fields from the preset's training defaults."""
        defaults = {
            "batch_size": 8,
            "lr": 2e-4,
            "ema_rate": 0.999,
            "grad_clip": 200.0,
            "skip_threshold": 400.0,
            "lr_schedule": "constant",
            "min_lr": 0.0,
            "steps": None,
        }
        defaults.update(TRAIN_PRESETS.get(self.preset, {}))
        return dataclasses.replace(self, **{k: v for k, v in defaults.items() if getattr(self, k) is None})


ARCH_FIELDS = (
    "width",
    "zdim",
    "enc_blocks",
    "dec_blocks",
    "custom_width_str",
    "bottleneck_multiple",
    "num_mixtures",
    "no_bias_above",
    "num_classes",
    "output_head",
    "sigma_q",
)


# --------------------------------------------------------------------------------------------
# Data order: a fixed permutation per epoch, so a position (epoch, batch) is all resume needs
# --------------------------------------------------------------------------------------------


class Batches:
    def __init__(self, data: ImageData, batch_size: int, rank: int, world: int, seed: int) -> None:
        self.data, self.batch_size, self.rank, self.world, self.seed = data, batch_size, rank, world, seed
        self._perm: tuple[int, np.ndarray] | None = None
        self.per_epoch = len(data) // (batch_size * world)
        if self.per_epoch == 0:
            raise DataError(
                f"{data.source}: {len(data)} training images, fewer than one global batch "
                f"({batch_size} x {world} processes)"
            )

    def get(self, epoch: int, index: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self._perm is None or self._perm[0] != epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = (epoch, torch.randperm(len(self.data), generator=g).numpy())
        perm = self._perm[1]
        start = (index * self.world + self.rank) * self.batch_size
        rows = np.sort(perm[start : start + self.batch_size])
        x = torch.from_numpy(np.ascontiguousarray(self.data.images[rows]))
        y = None if self.data.labels is None else torch.from_numpy(self.data.labels[rows])
        return x, y


# --------------------------------------------------------------------------------------------
# The trainer
# --------------------------------------------------------------------------------------------


def build_hparams(cfg: TrainConfig, train: ImageData) -> HParams:
    hp = HParams.preset(cfg.preset)
    overrides = {k: getattr(cfg, k) for k in ARCH_FIELDS if getattr(cfg, k) is not None}
    if cfg.data_format == "mnist" or cfg.data == "mnist":
        overrides.setdefault("dataset", "mnist")
    if "num_classes" not in overrides:
        # A conditional preset takes its class count from labelled data; unlabelled data -> unconditional.
        overrides["num_classes"] = train.num_classes if hp.conditional and train.labels is not None else 0
    return hp.replace(**overrides)


class Trainer:
    def __init__(self, cfg: TrainConfig, argv: list[str]) -> None:
        self.cfg, self.argv = cfg, argv
        # Every invocation of this run as (first step, argv): the first is the recipe, the rest resumes.
        self.invocations: list[tuple[int, list[str]]] = [(0, argv)]
        self.dist = distributed.setup(cfg.device)
        self.device = self.dist.device
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.progress = Progress(0, cfg.log_every, enabled=self.dist.main)
        self.log = JsonlLog(self.out / "log.jsonl", enabled=self.dist.main)

        resume = self._resume_path()
        state = torch.load(resume, map_location="cpu", weights_only=True) if resume else None
        if state is not None and state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{resume} is not a training checkpoint of this module")

        # Data first: bad data stops here, before any model is built.
        probe = HParams.preset(cfg.preset) if state is None else HParams.from_dict(state["hparams"])
        size, channels = probe.image_size, probe.image_channels
        self.train_data = load_split(
            cfg.data, "train", size, channels, cfg.data_format, cfg.test_data, cfg.holdout, cfg.seed
        )
        self.test_data = load_split(
            cfg.data, "test", size, channels, cfg.data_format, cfg.test_data, cfg.holdout, cfg.seed
        )

        self.hp = HParams.from_dict(state["hparams"]) if state else build_hparams(cfg, self.train_data)
        if self.hp.conditional and self.train_data.labels is None:
            raise DataError(
                f"{cfg.data}: a class-conditional model needs labelled data (one subfolder per class)"
            )
        self.batches = Batches(self.train_data, cfg.batch_size, self.dist.rank, self.dist.world, cfg.seed)
        self.total_steps = cfg.steps or math.ceil((cfg.epochs or 1.0) * self.batches.per_epoch)
        self.progress.total = self.total_steps

        torch.manual_seed(cfg.seed + self.dist.rank)  # each rank draws its own posterior noise
        self.vae = VDVAE(self.hp).to(self.device)
        self.ema = copy.deepcopy(self.vae).requires_grad_(False).eval()
        self.model = (
            DistributedDataParallel(
                self.vae, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
            if self.dist.enabled
            else self.vae
        )
        self.params = [p for p in self.vae.parameters() if p.requires_grad]
        betas = (cfg.beta1, cfg.beta2)
        if cfg.optimizer == "adamw":
            self.opt = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.wd, betas=betas, eps=1e-8)
        elif cfg.optimizer == "adamax":
            self.opt = torch.optim.Adamax(self.params, lr=cfg.lr, weight_decay=cfg.wd, betas=betas, eps=1e-8)
        else:
            raise ValueError(f"unknown optimizer {cfg.optimizer!r}: adamw or adamax")
        self.amp_dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.amp]
        if self.amp_dtype is not None and self.device.type != "cuda":
            self.amp_dtype = None  # mixed precision is a CUDA feature here; CPU trains in float32
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.schedule = information_schedule(self.hp.num_layers) if cfg.kl_schedule == "shifted_exp" else None

        self.step, self.epoch, self.batch_index = 0, 0, 0
        self.skipped, self.elapsed = 0, 0.0
        self.last_eval: dict | None = None
        if state is not None:
            self._load_state(state)
            self.log.truncate_after(self.step)
            self.progress.message(f"resumed from {resume} at step {self.step}")
        else:
            self.log.truncate_after(-1)
            self.log.write(
                "config",
                0,
                config=dataclasses.asdict(cfg),
                hparams=self.hp.to_dict(),
                parameters=sum(p.numel() for p in self.params),
                world_size=self.dist.world,
            )

    # ---- schedule ------------------------------------------------------------------------------

    def lr_at(self, step: int) -> float:
        """Linear warm-up over warmup_steps (update s runs at s/warmup of the peak), then constant
        or a cosine decay to min_lr at the last step."""
        cfg = self.cfg
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return cfg.lr * (step + 1) / cfg.warmup_steps
        if cfg.lr_schedule == "cosine":
            span = max(1, self.total_steps - cfg.warmup_steps)
            progress = min(1.0, (step - cfg.warmup_steps) / span)
            return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))
        return cfg.lr

    # ---- one update ----------------------------------------------------------------------------

    def train_step(self) -> dict:
        cfg = self.cfg
        x, y = self.batches.get(self.epoch, self.batch_index)
        x_in, x_target = self.vae.preprocess(x)
        labels = None
        if self.hp.conditional:
            labels = drop_labels(y, cfg.label_dropout)
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(self.step)

        self.opt.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            loss, stats = training_loss(self.model, x_in, x_target, labels, self.schedule)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.opt)
        clip = cfg.grad_clip if cfg.grad_clip and cfg.grad_clip > 0 else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, clip))  # the pre-clip norm
        finite = math.isfinite(grad_norm) and bool(torch.isfinite(loss))
        update = self.dist.all_true(finite and (not cfg.skip_threshold or grad_norm < cfg.skip_threshold))
        if update:
            self.scaler.step(self.opt)
            self._update_ema()
        else:
            self.skipped += 1
        self.scaler.update()

        self.step += 1
        self.batch_index += 1
        if self.batch_index == self.batches.per_epoch:
            self.epoch, self.batch_index = self.epoch + 1, 0
        elbo = stats["elbo"].detach().mean().item()
        return {
            "loss": loss.item(),
            "bpd": elbo / LN2,
            "elbo": elbo,
            "distortion": stats["distortion"].detach().mean().item(),
            "rate": stats["rate"].detach().mean().item(),
            "grad_norm": grad_norm,
            "skipped": not update,
            "lr": self.opt.param_groups[0]["lr"],
        }

    @torch.no_grad()
    def _update_ema(self) -> None:
        rate = self.cfg.ema_rate
        for p_ema, p in zip(self.ema.parameters(), self.vae.parameters()):
            p_ema.mul_(rate).add_(p.detach(), alpha=1.0 - rate)

    # ---- checkpoints -----------------------------------------------------------------------------

    def _resume_path(self) -> Path | None:
        if self.cfg.resume is None:
            return None
        path = Path(self.cfg.resume) if self.cfg.resume != "auto" else self.out / CHECKPOINT
        if path.is_dir():
            path = path / CHECKPOINT
        if not path.is_file():
            if self.cfg.resume == "auto":
                return None  # nothing to resume yet: start fresh
            raise FileNotFoundError(f"--resume {self.cfg.resume}: no checkpoint at {path}")
        return path

    def save_checkpoint(self) -> None:
        rng = self.dist.gather(torch.get_rng_state())
        cuda_rng = self.dist.gather(
            torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        )
        if not self.dist.main:
            return
        state = {
            "format": CHECKPOINT_FORMAT,
            "hparams": self.hp.to_dict(),
            "config": dataclasses.asdict(self.cfg),
            "step": self.step,
            "epoch": self.epoch,
            "batch_index": self.batch_index,
            "skipped": self.skipped,
            "elapsed": self.elapsed,
            "world_size": self.dist.world,
            "model": self.vae.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng,
            "cuda_rng": [r for r in cuda_rng if r is not None],
            "last_eval": json.dumps(self.last_eval),
            "invocations": json.dumps(self.invocations),
        }
        atomic_write(self.out / CHECKPOINT, lambda tmp: torch.save(state, tmp))

    def _load_state(self, state: dict) -> None:
        self.vae.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch, self.batch_index = state["step"], state["epoch"], state["batch_index"]
        self.skipped, self.elapsed = state["skipped"], state["elapsed"]
        self.last_eval = json.loads(state.get("last_eval") or "null")
        earlier = json.loads(state.get("invocations") or "[]")
        self.invocations = [*map(tuple, earlier), (self.step, self.argv)]
        if state["world_size"] == self.dist.world:
            torch.set_rng_state(state["rng"][self.dist.rank])
            if self.device.type == "cuda" and state["cuda_rng"]:
                torch.cuda.set_rng_state(state["cuda_rng"][self.dist.rank], self.device)
        else:
            self.progress.message(
                f"note: checkpoint from {state['world_size']} processes, resuming on {self.dist.world}: "
                "the data order continues but random draws are reseeded"
            )

    # ---- evaluation and samples -------------------------------------------------------------------

    def evaluate(self) -> dict:
        result = {**evaluate_elbo(self.ema, self.test_data, batch_size=100, seed=0), "step": self.step}
        self.last_eval = result
        self.log.write(
            "eval",
            self.step,
            test_bpd=result["bits_per_dim"],
            rate_bits_per_layer=result["rate_bits_per_layer"],
        )
        return result

    def write_samples(self) -> None:
        save_sample_grids(
            self.ema,
            self.out / "samples",
            prefix=f"step-{self.step:07d}-",
            temperature=self.cfg.sample_temperature,
            guidance=self.cfg.sample_guidance,
        )

    # ---- the run -----------------------------------------------------------------------------------

    def run(self) -> None:
        cfg = self.cfg
        start_step, t0, elapsed0 = self.step, time.time(), self.elapsed
        window: list[dict] = []  # rows since the last log line; throughput counts training time only
        while self.step < self.total_steps:
            t_step = time.time()
            row = self.train_step()
            row["seconds"] = time.time() - t_step
            self.elapsed = elapsed0 + (time.time() - t0)
            window.append(row)
            images = len(window) * cfg.batch_size * self.dist.world
            images_per_s = images / max(sum(r["seconds"] for r in window), 1e-9)
            if self.step % cfg.log_every == 0 or self.step == self.total_steps:
                mean = {k: float(np.mean([r[k] for r in window])) for k in ("loss", "bpd", "grad_norm")}
                self.log.write(
                    "train",
                    self.step,
                    epoch=self.epoch,
                    **{**row, **mean},
                    skipped_total=self.skipped,
                    images_per_s=round(images_per_s, 2),
                )
                window.clear()
            self.progress.update(
                self.step,
                time.time() - t0,
                self.step - start_step,
                loss=row["loss"],
                bpd=row["bpd"],
                gnorm=row["grad_norm"],
                skips=self.skipped,
                img_s=round(images_per_s, 1),
                lr=row["lr"],
            )
            if self.dist.main and cfg.eval_every and self.step % cfg.eval_every == 0:
                result = self.evaluate()
                self.progress.message(f"step {self.step}: test {result['bits_per_dim']:.4f} bits/dim (EMA)")
            if self.dist.main and cfg.sample_every and self.step % cfg.sample_every == 0:
                self.write_samples()
            if self.step % cfg.checkpoint_every == 0 or self.step == self.total_steps:
                self.save_checkpoint()
        self.finish()

    def finish(self) -> None:
        """Check the ranks agree, then (main process) evaluate, write samples and export."""
        checksums = self.dist.gather(_checksum(self.vae))
        if self.dist.world > 1:
            self.log.write("ranks", self.step, checksums=checksums, identical=len(set(checksums)) == 1)
            if len(set(checksums)) != 1:
                raise RuntimeError(f"ranks ended with different weights: {checksums}")
        if self.dist.main:
            result = self.last_eval if self.last_eval and self.last_eval.get("step") == self.step else None
            result = result or self.evaluate()
            self.write_samples()
            profile = {
                "step": self.step,
                "rate_bits_per_layer": result["rate_bits_per_layer"],
                "layer_resolutions": self.hp.layer_resolutions,
            }
            text = json.dumps(profile, indent=2)
            atomic_write(self.out / "rate_profile.json", lambda tmp: Path(tmp).write_text(text))
            self.progress.message("per-layer rate (bits, test mean):\n" + _rate_table(profile))
            self.export(result)
            self.progress.message(
                f"done: {self.step} steps, {self.skipped} skipped, {self.elapsed / 60:.1f} min, "
                f"test {result['bits_per_dim']:.4f} bits/dim -> {self.out / 'model'}"
            )
        self.dist.barrier()

    def export(self, result: dict) -> Path:
        images_seen = self.step * self.cfg.batch_size * self.dist.world
        commands = [(step, "python -m model.train " + shlex.join(argv)) for step, argv in self.invocations]
        provenance = {
            "trained_by": "model.train",
            "command": commands[0][1],
            **({"resumed": [f"at step {step}: {cmd}" for step, cmd in commands[1:]]} if commands[1:] else {}),
            "data": self.cfg.data,
            "steps": self.step,
            "images_seen": images_seen,
            "skipped_updates": self.skipped,
            "wall_time_s": round(self.elapsed, 1),
            "hardware": _hardware(self.device, self.dist.world),
            "torch": torch.__version__,
            "test_bits_per_dim": round(result["bits_per_dim"], 4),
            "test_eval": "python -m model.evaluate <folder> --data "
            + self.cfg.data
            + " --split test --seed 0",
        }
        return save_model_folder(self.ema, self.out / "model", provenance)


def _checksum(vae: VDVAE) -> str:
    import hashlib

    h = hashlib.sha256()
    for v in vae.state_dict().values():
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _hardware(device: torch.device, world: int) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"
    return f"{world} x {name}" if world > 1 else name


def _rate_table(profile: dict) -> str:
    rows = [
        f"  layer {i:3d}  res {r:4d}  {b:9.3f}"
        for i, (r, b) in enumerate(zip(profile["layer_resolutions"], profile["rate_bits_per_layer"]))
    ]
    return "\n".join(rows)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()

    def preset_default(key: str) -> str:
        values = ", ".join(f"{p} {TRAIN_PRESETS[p].get(key, '-')}" for p in TRAIN_PRESETS)
        return f"default: the preset's ({values})"

    p = argparse.ArgumentParser(
        prog="python -m model.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("data and output")
    g.add_argument(
        "--data",
        default=d.data,
        help="'mnist' (the bundled demo digits), a folder of PNG/JPEG images "
        "(one subfolder per class gives labels), a CIFAR-10 python-batches folder, or an official "
        f".npy array (default: {d.data})",
    )
    g.add_argument(
        "--data-format",
        default=d.data_format,
        choices=["auto", "mnist", "folder", "cifar10", "npy"],
        help=f"force the data format (default: {d.data_format})",
    )
    g.add_argument(
        "--test-data",
        default=None,
        help="separate test folder or .npy (default: none; a folder or "
        "an .npy gets a seeded hold-out, mnist and CIFAR-10 their own test split)",
    )
    g.add_argument(
        "--holdout",
        type=int,
        default=d.holdout,
        help=f"images held out for testing without --test-data (default: {d.holdout}, at most 10%%)",
    )
    g.add_argument(
        "--out", default=d.out, help=f"run folder: checkpoint, logs, samples, model/ (default: {d.out})"
    )
    g.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        default=None,
        help="resume from --out's checkpoint.pt (or the given checkpoint/run folder); with no "
        "checkpoint yet it starts fresh (default: off)",
    )
    g.add_argument(
        "--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available, else cpu)"
    )
    g.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default: {d.seed})")

    g = p.add_argument_group("architecture (HParams; default: the preset's)")
    g.add_argument("--preset", default=d.preset, choices=sorted(PRESETS), help=f"(default: {d.preset})")
    for name, typ in (
        ("width", int),
        ("zdim", int),
        ("enc_blocks", str),
        ("dec_blocks", str),
        ("custom_width_str", str),
        ("bottleneck_multiple", float),
        ("num_mixtures", int),
        ("no_bias_above", int),
        ("sigma_q", float),
    ):
        g.add_argument("--" + name.replace("_", "-"), type=typ, default=None, help="default: the preset's")
    g.add_argument(
        "--num-classes",
        type=int,
        default=None,
        help="0 = unconditional (default: the data's "
        "class count for a conditional preset with labelled data, else 0)",
    )
    g.add_argument("--output-head", choices=["dmol", "gaussian"], default=None, help="default: the preset's")

    g = p.add_argument_group("optimisation")
    g.add_argument(
        "--steps",
        type=int,
        default=None,
        help="updates to run; " + preset_default("steps") + "; else one epoch or --epochs",
    )
    g.add_argument("--epochs", type=float, default=None, help="length in epochs when --steps is not given")
    g.add_argument(
        "--batch-size", type=int, default=None, help="images per process; " + preset_default("batch_size")
    )
    g.add_argument("--lr", type=float, default=None, help="peak learning rate; " + preset_default("lr"))
    g.add_argument(
        "--lr-schedule",
        choices=["constant", "cosine"],
        default=None,
        help="after warm-up: constant (official) or cosine to --min-lr; " + preset_default("lr_schedule"),
    )
    g.add_argument(
        "--min-lr", type=float, default=None, help="end of the cosine decay; " + preset_default("min_lr")
    )
    g.add_argument("--warmup-steps", type=int, default=d.warmup_steps, help=f"(default: {d.warmup_steps})")
    g.add_argument(
        "--optimizer", choices=["adamw", "adamax"], default=d.optimizer, help=f"(default: {d.optimizer})"
    )
    g.add_argument("--wd", type=float, default=d.wd, help=f"weight decay (default: {d.wd})")
    g.add_argument("--beta1", type=float, default=d.beta1, help=f"(default: {d.beta1})")
    g.add_argument("--beta2", type=float, default=d.beta2, help=f"(default: {d.beta2}, as openai/vdvae)")
    g.add_argument(
        "--grad-clip", type=float, default=None, help="clip the gradient norm; " + preset_default("grad_clip")
    )
    g.add_argument(
        "--skip-threshold",
        type=float,
        default=None,
        help="skip updates whose pre-clip gradient norm "
        "reaches this (0 = never; non-finite ones always); " + preset_default("skip_threshold"),
    )
    g.add_argument("--ema-rate", type=float, default=None, help=preset_default("ema_rate"))
    g.add_argument(
        "--amp",
        choices=["none", "bf16", "fp16"],
        default=d.amp,
        help="mixed precision on CUDA (ignored on CPU) (default: none)",
    )
    g.add_argument(
        "--kl-schedule",
        choices=["none", "shifted_exp"],
        default=d.kl_schedule,
        help="KL reweighting by the information schedule (default: none = the plain ELBO)",
    )
    g.add_argument(
        "--label-dropout",
        type=float,
        default=d.label_dropout,
        help=f"probability of the null label, for classifier-free guidance (default: {d.label_dropout})",
    )

    g = p.add_argument_group("feedback")
    g.add_argument("--log-every", type=int, default=d.log_every, help=f"(default: {d.log_every})")
    g.add_argument(
        "--eval-every",
        type=int,
        default=d.eval_every,
        help=f"test bits/dim every N steps, 0 = only at the end (default: {d.eval_every})",
    )
    g.add_argument(
        "--sample-every",
        type=int,
        default=d.sample_every,
        help=f"sample grids every N steps (default: {d.sample_every})",
    )
    g.add_argument(
        "--checkpoint-every", type=int, default=d.checkpoint_every, help=f"(default: {d.checkpoint_every})"
    )
    g.add_argument(
        "--sample-temperature",
        type=float,
        default=d.sample_temperature,
        help=f"temperature of the per-class grids (default: {d.sample_temperature})",
    )
    g.add_argument(
        "--sample-guidance",
        type=float,
        default=d.sample_guidance,
        help=f"guidance weight of the guided per-class grid (default: {d.sample_guidance})",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    cfg = TrainConfig(**vars(args)).resolved()
    try:
        trainer = Trainer(cfg, argv)
    except (DataError, HParamsError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        trainer.run()
    finally:
        trainer.dist.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
