"""The trainer: one training run from data to the served model folder, resumable exactly.

Writes under the run folder: checkpoint.pt (atomic; --resume continues exactly where it stopped),
log.jsonl (and tensorboard/ with --tensorboard), sample grids in samples/, rate_profile.json, and
the served model folder model/ (EMA weights, config.json, README.md), loadable by model.load_model
and by the service.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import platform
import shlex
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from ..checkpoint import save_model_folder
from ..files import atomic_write, atomic_write_text
from ..hparams import HParams
from ..inference import AMP_DTYPES
from ..likelihoods import LN2
from ..lowres import downsample
from ..vae import VDVAE
from . import distributed
from .config import TrainConfig, build_hparams
from .data import BatchOrder, DataError, load_split
from .ema import ema_rate, short_run_warning, update_ema
from .evaluation.evaluate import evaluate_elbo, sample_grids, save_grids
from .objectives import drop_labels, kl_schedule, training_loss
from .progress import Progress, RunLogs, rate_table

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = "vdvae-train/1"


class Trainer:
    """One run: data, model, optimiser and EMA, the step loop, checkpoints, evaluation and export."""

    def __init__(self, cfg: TrainConfig, argv: list[str]) -> None:
        self.cfg, self.argv = cfg, argv
        # Every invocation of this run as (first step, argv): the first is the recipe, the rest resumes.
        self.invocations: list[tuple[int, list[str]]] = [(0, argv)]
        self.dist = distributed.setup(cfg.device)
        self.device = self.dist.device
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.progress = Progress(enabled=self.dist.main)
        self.log = RunLogs(self.out, enabled=self.dist.main, tensorboard=cfg.tensorboard)

        resume = self._resume_path()
        state = torch.load(resume, map_location="cpu", weights_only=True) if resume else None
        if state is not None and state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{resume} is not a training checkpoint of this module")
        self._load_data(state)  # first: bad data stops here, before any model is built
        self._build_model()
        self._build_optimizer()

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

    def _load_data(self, state: dict[str, Any] | None) -> None:
        """Both splits, checked against the image shape; the architecture (the checkpoint's when
        resuming); the batch order and the run's length."""
        cfg = self.cfg
        if state is not None:
            probe = HParams.from_dict(state["hparams"])
        else:  # the image shape; class count and dataset are fitted to the data below
            probe = HParams.preset(cfg.preset).replace(**cfg.architecture)
        size, channels = probe.image_size, probe.image_channels
        self.train_data, self.test_data = (
            load_split(
                cfg.data,
                split,
                size,
                channels,
                cfg.data_format,
                cfg.test_data,
                cfg.holdout,
                cfg.seed,
                pool=cfg.data_pool,
            )
            for split in ("train", "test")
        )
        self.hp = HParams.from_dict(state["hparams"]) if state else build_hparams(cfg, self.train_data)
        if self.hp.conditional and self.train_data.labels is None:
            raise DataError(
                f"{cfg.data}: a class-conditional model needs labelled data (one subfolder per class)"
            )
        self.batches = BatchOrder(self.train_data, cfg.batch_size, self.dist.rank, self.dist.world, cfg.seed)
        self.total_steps = cfg.steps or math.ceil((cfg.epochs or 1.0) * self.batches.per_epoch)
        if state is None and (note := short_run_warning(cfg.ema_rate, self.total_steps, cfg.ema_warmup)):
            self.progress.message(note)

    def _build_model(self) -> None:
        """The model (wrapped for DDP across processes) and its EMA copy."""
        torch.manual_seed(self.cfg.seed + self.dist.rank)  # each rank draws its own posterior noise
        self.vae = VDVAE(self.hp).to(self.device)
        self.ema = copy.deepcopy(self.vae).requires_grad_(False).eval()
        self.model = self.vae
        if self.dist.enabled:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DistributedDataParallel(self.vae, device_ids=device_ids)
        self.params = [p for p in self.vae.parameters() if p.requires_grad]

    def _build_optimizer(self) -> None:
        """The optimiser, mixed precision (CUDA only) and the KL weights' information schedule."""
        cfg = self.cfg
        optimizers = {"adamw": torch.optim.AdamW, "adamax": torch.optim.Adamax}
        if cfg.optimizer not in optimizers:
            raise ValueError(f"unknown optimizer {cfg.optimizer!r}: adamw or adamax")
        self.opt = optimizers[cfg.optimizer](
            self.params, lr=cfg.lr, weight_decay=cfg.wd, betas=(cfg.beta1, cfg.beta2), eps=1e-8
        )
        self.amp_dtype = AMP_DTYPES[cfg.amp]
        if self.amp_dtype is not None and self.device.type != "cuda":
            self.amp_dtype = None  # mixed precision is a CUDA feature here; CPU trains in float32
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.schedule = kl_schedule(cfg.kl_schedule, self.hp)

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
        low_res = downsample(x, self.hp.low_res) if self.hp.low_res else None  # noised in the model
        labels = None
        if self.hp.conditional:
            labels = drop_labels(y, cfg.label_dropout)
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(self.step)

        self.opt.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            loss, stats = training_loss(self.model, x_in, x_target, labels, self.schedule, low_res)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.opt)
        clip = cfg.grad_clip if cfg.grad_clip and cfg.grad_clip > 0 else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, clip))  # the pre-clip norm
        finite = math.isfinite(grad_norm) and bool(torch.isfinite(loss))
        update = self.dist.all_true(finite and (not cfg.skip_threshold or grad_norm < cfg.skip_threshold))
        if update:
            self.scaler.step(self.opt)
            update_ema(self.ema, self.vae, ema_rate(cfg.ema_rate, self.step, cfg.ema_warmup))
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
        elbo = evaluate_elbo(self.ema, self.test_data, batch_size=100, seed=0, progress=self.dist.main)
        result = {**elbo, "step": self.step}
        self.last_eval = result
        self.log.write(
            "eval",
            self.step,
            test_bpd=result["bits_per_dim"],
            rate_bits_per_layer=result["rate_bits_per_layer"],
        )
        return result

    def write_samples(self) -> None:
        cfg = self.cfg
        grids = sample_grids(
            self.ema,
            temperature=cfg.sample_temperature,
            guidance=cfg.sample_guidance,
            data=self.test_data,
        )
        save_grids(grids, self.out / "samples", prefix=f"step-{self.step:07d}-")
        self.log.images(self.step, grids)

    # ---- the run -----------------------------------------------------------------------------------

    def run(self) -> None:
        cfg = self.cfg
        t0, elapsed0 = time.time(), self.elapsed
        self.progress.start(self.total_steps, self.step)
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
        self.progress.close()
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
            atomic_write_text(self.out / "rate_profile.json", json.dumps(profile, indent=2))
            self.progress.message("per-layer rate (bits, test mean):\n" + rate_table(profile))
            self.export(result)
            self.progress.message(
                f"done: {self.step} steps, {self.skipped} skipped, {self.elapsed / 60:.1f} min, "
                f"test {result['bits_per_dim']:.4f} bits/dim -> {self.out / 'model'}"
            )
        self.dist.barrier()

    def export(self, result: dict) -> Path:
        images_seen = self.step * self.cfg.batch_size * self.dist.world
        commands = [
            (step, "python -m model.training.train " + shlex.join(argv)) for step, argv in self.invocations
        ]
        provenance = {
            "trained_by": "model.training",
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
            "test_eval": "python -m model.training.evaluation.evaluate <folder> --data "
            + self.cfg.data
            + (" --data-pool" if self.cfg.data_pool else "")
            + " --split test --seed 0",
        }
        return save_model_folder(self.ema, self.out / "model", provenance)


def _checksum(vae: VDVAE) -> str:
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
