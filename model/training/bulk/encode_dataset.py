"""Encode a dataset as a bulk job: per-image per-layer KL, the ELBO in bits per dim, latents.

    python -m model.training.bulk.encode_dataset weights/mnist --data mnist --split train --out enc/
    torchrun --nproc_per_node 8 -m model.training.bulk.encode_dataset weights/cifar10 \\
        --data cifar-10-batches-py/ --split train --latents 4 --out enc/

The data is any format the trainer reads (model.training.data). Image i (its index in the split)
draws its posterior noise from seed + i, as model.training.evaluation.evaluate does, so every figure, and
every output file, is the same whatever the number of processes; a killed job, rerun with the same
command, skips the shards it finished. Each shard is one .npz of arrays in image order:
  index                    (n,) the images' indices in the split
  label                    (n,) the label each image was encoded with; -1: the null label
  kl_bits                  (n, L) KL of each latent layer in bits, top layer first
  bits_per_dim             (n,) the negative ELBO in bits per dim (distortion + rate)
  distortion_bits_per_dim  (n,)
  rate_bits_per_dim        (n,)
  z_0 .. z_{k-1}           (n, zdim, r, r) posterior samples of the top k layers (--latents k)
  mean_0 .., std_0 ..      their posterior means and standard deviations (--posterior)
model.training.bulk.shards.read_arrays(out) concatenates the shards of a finished job.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ...likelihoods import LN2
from ...vae import VDVAE
from ..data import ImageSet
from ..distributed import Dist, exit_process
from ..evaluation.evaluate import add_data_options, encode_images, load_data, uses_labels
from . import shards


def encoded_arrays(
    vae: VDVAE, data: ImageSet, index: range, args: argparse.Namespace
) -> dict[str, np.ndarray]:
    """The arrays of images `index` (see above)."""
    enc = encode_images(vae, data, index, args.seed, conditional=not args.unconditional)
    n = len(index)
    labelled = uses_labels(vae, data, conditional=not args.unconditional)
    out = {
        "index": np.arange(index.start, index.stop, dtype=np.int64),
        "label": data.labels[index.start : index.stop].astype(np.int64)
        if labelled
        else np.full(n, -1, dtype=np.int64),
        "kl_bits": enc.kl_bits.float().cpu().numpy(),
        "bits_per_dim": enc.bits_per_dim.float().cpu().numpy(),
        "distortion_bits_per_dim": (enc.distortion / LN2).float().cpu().numpy(),
        "rate_bits_per_dim": (enc.rate / LN2).float().cpu().numpy(),
    }
    for layer in range(args.latents):
        out[f"z_{layer}"] = enc.z[layer].cpu().numpy()
        if args.posterior:
            out[f"mean_{layer}"] = enc.mean[layer].cpu().numpy()
            out[f"std_{layer}"] = enc.std[layer].cpu().numpy()
    return out


def encode_shard(vae: VDVAE, data: ImageSet, args: argparse.Namespace) -> shards.Compute:
    """How one shard is computed: its images encoded in batches, written as one .npz."""

    def compute(shard: shards.Shard, folder: shards.ShardFolder, advance: Callable[[int], object]) -> list:
        parts = []
        for index in shard.batches(args.batch_size):
            parts.append(encoded_arrays(vae, data, index, args))
            advance(len(index))
        arrays = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
        return [folder.write(f"{shard.name}.npz", shards.npz_bytes(arrays))]

    return compute


def prepare(args: argparse.Namespace, dist: Dist) -> shards.Job:
    vae = shards.load_model_for(args, dist)
    hp = vae.hp
    data = load_data(args, vae)
    if not 0 <= args.latents <= hp.num_layers:
        raise ValueError(f"--latents must be in 0..{hp.num_layers} (the model's latent layers)")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")

    def describe() -> dict:
        asked = {k: getattr(args, k) for k in ("data", "data_format", "test_data", "split", "limit", "seed")}
        layers = {"latents": args.latents, "posterior": args.posterior}
        labels = "true labels" if uses_labels(vae, data, not args.unconditional) else "null label"
        return {
            "job": "encode_dataset",
            **asked,
            "images": len(data),
            "labels": labels,
            **layers,
            **shards.run_options(args),
            **shards.model_record(args.model, vae),
        }

    return shards.Job(
        out=Path(args.out),
        describe=describe,
        shards=shards.plan(len(data), args.shard_size),
        compute=encode_shard(vae, data, args),
        name="encode_dataset",
    )


def build_parser(prog: str = "python -m model.training.bulk.encode_dataset") -> argparse.ArgumentParser:
    p = shards.job_parser(prog, __doc__.replace("python -m model.training.bulk.encode_dataset", prog))
    add_data_options(p)
    p.add_argument("--latents", type=int, default=0, help="keep the top K layers' posterior samples")
    p.add_argument("--posterior", action="store_true", help="with --latents: their means and stds too")
    return p


def main(
    argv: Sequence[str] | None = None, prog: str = "python -m model.training.bulk.encode_dataset"
) -> int:
    args = build_parser(prog).parse_args(argv)
    return shards.main(lambda dist: prepare(args, dist), args.device)


if __name__ == "__main__":
    exit_process(main())
