"""Generate n samples as a bulk job: one process, or many GPUs and nodes under torchrun.

    python -m model.training.bulk.generate weights/mnist --num-samples 50000 --label random --out samples/
    torchrun --nproc_per_node 8 -m model.training.bulk.generate weights/mnist -n 50000 --out samples/

Image i uses seed base + i (`--seed`), so every image, and every output file, is the same whatever
the number of processes; a killed job, rerun with the same command, skips the shards it finished.
Writes a folder of PNGs per shard (or one .npz per shard: images, labels, seeds) and a manifest
(model.training.bulk.shards describes the folder). Labels of a class-conditional model (`--label`):
  default  the model's label rule (config.json "sampling"; model.sampling): "seed" gives each
           image the class seed mod classes, "null" is `none`
  none     the null label: the model's unconditional prior (the only choice for an
           unconditional model)
  K        class K for every image
  random   a class per image drawn from its own seed (a stream apart from its latent draws)
  cycle    image i gets class i mod classes: equal counts per class
  seed     image i gets class (seed + i) mod classes: the "seed" rule of the sampling defaults
--temperature and --guidance left out take the model's sampling defaults too (as /sample does);
`--guidance 0` turns guidance off. job.json records the values used.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ...hparams import HParams
from ...imageio import png_bytes
from ...sampling import label_from_seed
from ...vae import VDVAE
from ..distributed import Dist, exit_process
from . import shards

LABEL_MODES = ("default", "none", "random", "cycle", "seed")
# Entropy that keeps a seed's label draw apart from its latent and pixel streams (ASCII "label").
LABEL_STREAM = 0x6C6162656C


def image_labels(mode: str, num_classes: int, index: range, seeds: Sequence[int]) -> list[int] | None:
    """The labels of images `index` with their `seeds` (None: the null label for all)."""
    if mode == "none":
        return None
    if mode == "random":
        return [int(np.random.default_rng([LABEL_STREAM, s]).integers(num_classes)) for s in seeds]
    if mode == "cycle":
        return [i % num_classes for i in index]
    if mode == "seed":
        return [label_from_seed(s, num_classes) for s in seeds]
    return [int(mode)] * len(index)


def label_option(text: str) -> str:
    """--label: none, random, cycle or a class number."""
    if text in LABEL_MODES or text.isdigit():
        return text
    raise argparse.ArgumentTypeError(f"expected a class number or one of {', '.join(LABEL_MODES)}")


def apply_sampling_defaults(args: argparse.Namespace, vae: VDVAE) -> None:
    """Fill --label, --temperature and --guidance left out with the model's sampling defaults."""
    d = vae.sampling
    if args.label == "default":
        args.label = "seed" if vae.hp.conditional and d.label == "seed" else "none"
    if args.temperature is None:
        args.temperature = d.temperature
    if args.guidance is None and args.label != "none":
        args.guidance = d.guidance


def check_options(args: argparse.Namespace, hp: HParams) -> None:
    """Refuse, with the reason, options the model cannot honour (ValueError)."""
    if args.label != "none" and not hp.conditional:
        raise ValueError("this model is unconditional: use --label none")
    if args.label.isdigit() and int(args.label) >= hp.num_classes:
        raise ValueError(f"--label {args.label} out of range: classes are 0..{hp.num_classes - 1}")
    if args.guidance is not None and args.label == "none":
        raise ValueError("--guidance needs labels: the null label has nothing to guide towards")
    if not (math.isfinite(args.temperature) and args.temperature >= 0):
        raise ValueError(f"--temperature must be finite and >= 0, got {args.temperature}")
    if args.num_samples < 1 or args.seed < 0:
        raise ValueError(f"--num-samples must be >= 1 and --seed >= 0, got {args.num_samples}, {args.seed}")


def guidance(text: str) -> tuple[float, float]:
    """'W' (both weights) or 'W_MEAN,W_VAR'."""
    parts = [float(p) for p in text.split(",")]
    if len(parts) not in (1, 2):
        raise argparse.ArgumentTypeError("expected W or W_MEAN,W_VAR")
    return (parts[0], parts[-1])


def sample_shard(vae: VDVAE, args: argparse.Namespace) -> shards.Compute:
    """How one shard is computed: its images in batches, written as PNGs or one .npz."""

    def compute(
        shard: shards.Shard, folder: shards.ShardFolder, advance: Callable[[int], object]
    ) -> list[dict]:
        files, images, labels, seeds = [], [], [], []
        for index in shard.batches(args.batch_size):
            batch_seeds = [args.seed + i for i in index]
            batch_labels = image_labels(args.label, vae.hp.num_classes, index, batch_seeds)
            x = vae.sample(len(index), args.temperature, batch_labels, args.guidance, batch_seeds)
            x = x.cpu().numpy()  # (b, H, W, C) uint8
            batch_labels = batch_labels or [-1] * len(index)  # -1: the null label
            if args.format == "png":
                for i, image, seed, label in zip(index, x, batch_seeds, batch_labels):
                    record = folder.write(f"{shard.name}/{i:06d}.png", png_bytes(image))
                    files.append({**record, "seed": seed, "label": label})
            images.append(x)
            labels += batch_labels
            seeds += batch_seeds
            advance(len(index))
        if args.format == "npz":
            arrays = {"images": np.concatenate(images), "labels": np.array(labels), "seeds": np.array(seeds)}
            files.append(folder.write(f"{shard.name}.npz", shards.npz_bytes(arrays)))
        return files

    return compute


def prepare(args: argparse.Namespace, dist: Dist) -> shards.Job:
    vae = shards.load_model_for(args, dist)
    apply_sampling_defaults(args, vae)
    check_options(args, vae.hp)

    def describe() -> dict:
        asked = {k: getattr(args, k) for k in ("num_samples", "seed", "label", "temperature", "format")}
        asked["guidance"] = None if args.guidance is None else list(args.guidance)
        return {
            "job": "generate",
            **asked,
            **shards.run_options(args),
            **shards.model_record(args.model, vae),
        }

    return shards.Job(
        out=Path(args.out),
        describe=describe,
        shards=shards.plan(args.num_samples, args.shard_size),
        compute=sample_shard(vae, args),
        name="generate",
    )


def build_parser(prog: str = "python -m model.training.bulk.generate") -> argparse.ArgumentParser:
    p = shards.job_parser(prog, __doc__.replace("python -m model.training.bulk.generate", prog))
    # Not --n: torchrun would take it for an abbreviation of its own --nnodes / --nproc-per-node.
    p.add_argument("-n", "--num-samples", type=int, required=True, help="number of samples")
    p.add_argument("--seed", type=int, default=0, help="image i uses seed + i")
    p.add_argument(
        "--label",
        type=label_option,
        default="default",
        help="default, none, an integer class, random, cycle or seed (see above)",
    )
    p.add_argument(
        "--guidance", type=guidance, default=None, help="W or W_MEAN,W_VAR (needs labels; unset: the model's)"
    )
    p.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="prior temperature of every layer (unset: the model's)",
    )
    p.add_argument("--format", choices=("png", "npz"), default="png", help="PNG folders or .npz files")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "python -m model.training.bulk.generate") -> int:
    args = build_parser(prog).parse_args(argv)
    return shards.main(lambda dist: prepare(args, dist), args.device)


if __name__ == "__main__":
    exit_process(main())
