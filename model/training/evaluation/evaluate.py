"""Evaluate a model: the ELBO bound in bits per dim, the per-layer rate, reconstructions by depth,
and with --fid the quality of its samples (model.training.evaluation.quality).

    python -m model.training.evaluation.evaluate weights/mnist --data mnist --split test --out eval/
    python -m model.training.evaluation.evaluate weights/mnist --data mnist --fid

Prints one JSON object. Posterior noise comes from per-image seeds (seed + image index), so the
figure is exactly reproducible: the same command gives the same digits on any batch size.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...checkpoint import CheckpointError, load_model
from ...imageio import image_grid, save_png
from ...likelihoods import LN2
from ...lowres import downsample
from ...outputs import Encoding
from ...vae import VDVAE
from ..data import DATA_FORMATS, DataError, ImageSet, load_split
from ..progress import progress_bar
from .judge import JudgeError
from .quality import (
    DEFAULT,
    INCEPTION_NOTE,
    Setting,
    check_judge_fits,
    draw,
    judge_path_for,
    label_agreement,
    load_quality_judge,
)


def uses_labels(vae: VDVAE, data: ImageSet, conditional: bool = True) -> bool:
    """Whether images are encoded with their true labels: a class-conditional model, `conditional`
    asked for and labelled data; otherwise the null label."""
    return vae.hp.conditional and conditional and data.labels is not None


def encode_images(
    vae: VDVAE, data: ImageSet, index: range, seed: int = 0, conditional: bool = True
) -> Encoding:
    """The posterior of images `index` of `data`; image i's posterior noise comes from seed + i, so
    an image's figures do not depend on the batch it is encoded in. Labels as `uses_labels` says."""
    x = torch.from_numpy(np.ascontiguousarray(data.images[index.start : index.stop]))
    labels = None
    if uses_labels(vae, data, conditional):
        labels = torch.from_numpy(data.labels[index.start : index.stop])
    return vae.encode(x, seeds=[seed + i for i in index], labels=labels)


def evaluate_elbo(
    vae: VDVAE,
    data: ImageSet,
    batch_size: int = 100,
    seed: int = 0,
    conditional: bool = True,
    progress: bool = False,
) -> dict:
    """Mean negative ELBO over `data`: bits/dim, nats/dim, distortion, rate and per-layer rate.

    For a class-conditional model `conditional` uses the true labels (a bound on -log p(x | y));
    otherwise the null label (a bound on -log p(x)). `progress`: a bar of images done (stderr).
    """
    totals = {"elbo": 0.0, "distortion": 0.0, "rate": 0.0}
    layer_bits = torch.zeros(vae.hp.num_layers, dtype=torch.float64)
    n = len(data)
    bar = progress_bar(n, enabled=progress, desc="evaluate", unit="img", leave=False)
    for start in range(0, n, batch_size):
        index = range(start, min(start + batch_size, n))
        enc = encode_images(vae, data, index, seed, conditional)
        totals["elbo"] += enc.elbo.double().sum().item()
        totals["distortion"] += enc.distortion.double().sum().item()
        totals["rate"] += enc.rate.double().sum().item()
        layer_bits += enc.kl_bits.double().sum(dim=0).cpu()
        bar.update(len(index))
    bar.close()
    mean = {k: v / n for k, v in totals.items()}
    return {
        "bits_per_dim": mean["elbo"] / LN2,
        "elbo_nats_per_dim": mean["elbo"],
        "distortion_bits_per_dim": mean["distortion"] / LN2,
        "rate_bits_per_dim": mean["rate"] / LN2,
        "rate_bits_per_layer": [round(b, 4) for b in (layer_bits / n).tolist()],
        "images": n,
        "seed": seed,
    }


def reconstruction_grid(
    vae: VDVAE,
    x: torch.Tensor,
    depths: list[int],
    temperature: float,
    seed: int,
    labels: torch.Tensor | None = None,
) -> np.ndarray:
    """Rows: the originals, then reconstructions taking the top k layers from each image (k in depths);
    a class-conditional model gets the images' `labels` (None: the null label)."""
    rows = [x.cpu()]
    for k in depths:
        rec = vae.reconstruct(x, layers=k, temperature=temperature, seeds=seed, labels=labels)
        rows.append(rec.images.cpu())
    return image_grid(torch.cat(rows), ncols=len(x))


def low_res_inputs(
    vae: VDVAE, data: ImageSet | None, cols: int, label: int | None = None
) -> torch.Tensor | None:
    """A super-resolution model's inputs for one grid row: the first `cols` images of `data` (of
    class `label`), average-pooled; None for a plain model."""
    if not vae.hp.low_res:
        return None
    if data is None:
        raise ValueError("a super-resolution model's sample grids need images to condition on")
    index = np.arange(len(data)) if label is None else np.flatnonzero(data.labels == label)
    picks = index[np.linspace(0, len(index) - 1, min(cols, len(index))).astype(int)]  # spread out
    x = torch.from_numpy(np.ascontiguousarray(data.images[picks]))
    return downsample(x, vae.hp.low_res)


def sample_grids(
    vae: VDVAE, temperature: float = 0.8, guidance: float = 1.0, cols: int = 10, data: ImageSet | None = None
) -> dict:
    """Named uint8 grids, every draw from fixed seeds:
    "temperatures": unconditional samples, one row per temperature (1.0 down to 0.6);
    "classes": one row per class (the first 10) at `temperature`;
    "classes-guided": the same seeds with guidance (guidance, guidance).
    A super-resolution model conditions each row on pooled images of `data` (of the row's class);
    its "temperatures" grid starts with a row of those inputs, scaled up."""
    temps = [1.0, 0.9, 0.8, 0.7, 0.6]
    low = low_res_inputs(vae, data, cols)
    rows = [
        vae.sample(cols, temperature=t, labels=None, seeds=1000 * i, low_res=low) for i, t in enumerate(temps)
    ]
    if low is not None:
        k = vae.hp.image_size // vae.hp.low_res
        rows.insert(0, low.repeat_interleave(k, dim=1).repeat_interleave(k, dim=2))
    grids = {"temperatures": image_grid(torch.cat(rows), ncols=cols)}
    if vae.hp.conditional:
        classes = range(min(vae.hp.num_classes, 10))
        for name, g in (("classes", None), ("classes-guided", (guidance, guidance))):
            rows = []
            for c in classes:
                low = low_res_inputs(vae, data, cols, c)
                n = cols if low is None else len(low)
                rows.append(
                    vae.sample(n, temperature=temperature, labels=c, guidance=g, seeds=100 * c, low_res=low)
                )
            grids[name] = image_grid(torch.cat(rows), ncols=cols)
    return grids


def save_grids(grids: dict[str, np.ndarray], folder: Path, prefix: str = "") -> list[Path]:
    """Each grid as folder/<prefix><name>.png."""
    paths = []
    for name, grid in grids.items():
        paths.append(folder / f"{prefix}{name}.png")
        save_png(grid, paths[-1])
    return paths


def save_sample_grids(vae: VDVAE, folder: Path, prefix: str = "", **kwargs: Any) -> list[Path]:
    return save_grids(sample_grids(vae, **kwargs), folder, prefix)


def default_depths(num_layers: int) -> list[int]:
    """A spread of depths from none to all layers (0, ~L/8, ~L/4, ~L/2, L)."""
    return sorted({0, max(1, num_layers // 8), max(1, num_layers // 4), num_layers // 2, num_layers})


def write_figures(vae: VDVAE, data: ImageSet, out: Path, args: argparse.Namespace) -> dict:
    """Reconstructions of eight test images at several depths, and the sample grids, under `out`."""
    hp = vae.hp
    # Eight images of different classes where the data has labels (the MNIST file is sorted by label).
    picks = np.arange(8) * max(1, len(data) // 8)
    x = torch.from_numpy(np.ascontiguousarray(data.images[picks]))
    labels = None
    if hp.conditional and not args.unconditional and data.labels is not None:
        labels = torch.from_numpy(data.labels[picks])
    depths = default_depths(hp.num_layers)
    grid = reconstruction_grid(vae, x, depths, args.temperature, args.seed, labels)
    save_png(grid, out / "reconstructions.png")
    grids = save_sample_grids(vae, out, temperature=args.temperature, guidance=args.guidance, data=data)
    return {
        "reconstructions": {
            "file": str(out / "reconstructions.png"),
            "rows": ["original", *depths],
            "labels": "null" if labels is None else "true labels",
        },
        "sample_grids": [str(p) for p in grids],
    }


def sample_quality(vae: VDVAE, data: ImageSet, args: argparse.Namespace) -> dict:
    """Digit FID, precision, recall, confident share and label accuracy of --samples samples drawn
    with the model's sampling defaults (or the --fid-* overrides), and of the real `data` images
    for scale."""
    qj, about = load_quality_judge(args.fid, args.data, args.data_format, args.test_data)
    check_judge_fits(qj, vae)
    setting = Setting(
        "evaluated",
        DEFAULT if args.fid_temperature is None else args.fid_temperature,
        DEFAULT if args.fid_labels is None else args.fid_labels,
        DEFAULT if args.fid_guidance is None else args.fid_guidance,
    )
    images, labels = draw(vae, setting, args.samples, seed=args.sample_seed)
    real = torch.from_numpy(np.ascontiguousarray(data.images))
    return {
        **about,
        "setting": setting.describe(vae),
        "sample_seeds": f"{args.sample_seed}..{args.sample_seed + args.samples - 1}",
        **qj.score(images, labels),
        f"real_{args.split}_images": qj.score(real, data.labels),
    }


class ExamplesHelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the help, and the examples laid out as written."""


def add_data_options(p: argparse.ArgumentParser) -> None:
    """Which images are encoded, and how: the data, its split, the posterior noise's seed, labels."""
    p.add_argument(
        "--data", default="mnist", help="'mnist', a folder of images, a CIFAR-10 folder or a .npy file"
    )
    p.add_argument("--data-format", default="auto", choices=DATA_FORMATS, help="force the data format")
    p.add_argument("--test-data", default=None, help="separate test folder/.npy (else a seeded hold-out)")
    p.add_argument("--data-pool", action="store_true", help="average-pool larger images to the model's size")
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--seed", type=int, default=0, help="image i's posterior noise uses seed + i")
    p.add_argument("--limit", type=int, default=None, help="only the first N images of the split")
    p.add_argument("--unconditional", action="store_true", help="use the null label (bound on -log p(x))")


def load_data(args: argparse.Namespace, vae: VDVAE) -> ImageSet:
    """The images that add_data_options' options name, checked against the model's image shape."""
    hp = vae.hp
    data = load_split(
        args.data,
        args.split,
        hp.image_size,
        hp.image_channels,
        args.data_format,
        args.test_data,
        pool=args.data_pool,
    )
    return data.subset(np.arange(min(args.limit, len(data)))) if args.limit else data


def build_parser(prog: str = "python -m model.training.evaluation.evaluate") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Evaluate a VDVAE: ELBO bound in bits/dim (JSON), per-layer rate, reconstructions, "
        "and with --fid sample quality in a judge's feature space.",
        epilog=f"examples:\n  {prog} weights/mnist --data mnist --split test --out eval/\n"
        f"  {prog} weights/mnist --data mnist --fid --samples 1000\n"
        f"  {prog} cifar10-seed0-iter-900000-model-ema.th --data cifar-10-batches-py/ --limit 1000\n\n"
        "--fid uses a judge (model.training.evaluation.judge): for --data mnist the bundled digit judge "
        "(weights/judges/mnist.safetensors); for other data, a judge file you train or provide. "
        f"Note: {INCEPTION_NOTE}.",
        formatter_class=ExamplesHelpFormatter,
    )
    p.add_argument("model", help="model folder, or an official .th file (with --preset)")
    p.add_argument("--preset", default=None, help="preset of an official .th file (default: inferred)")
    add_data_options(p)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
    p.add_argument(
        "--out", default=None, help="folder for reconstructions at several depths and sample grids"
    )
    p.add_argument(
        "--temperature",
        type=float,
        default=0.8,
        help="prior temperature of reconstructions and per-class samples",
    )
    p.add_argument("--guidance", type=float, default=1.0, help="weight of the guided per-class grid")
    p.add_argument(
        "--label-agreement",
        type=int,
        default=0,
        metavar="N",
        help="class-conditional models: draw N samples per class and report how many have a "
        "nearest training image of their class (0: off)",
    )
    add_quality_options(p)
    return p


def add_quality_options(p: argparse.ArgumentParser) -> None:
    """--fid and the settings of the samples it draws, as one group of the help."""
    q = p.add_argument_group("sample quality (--fid)")
    q.add_argument(
        "--fid",
        nargs="?",
        const="auto",
        default=None,
        metavar="JUDGE",
        help="report digit FID, precision/recall (k=3), confident share and label accuracy of samples; "
        "JUDGE: a judge file (default for --data mnist: the bundled one)",
    )
    q.add_argument("-n", "--samples", type=int, default=1000, help="samples drawn for --fid")
    q.add_argument("--sample-seed", type=int, default=0, help="sample i uses seed sample-seed + i")
    q.add_argument("--fid-temperature", type=float, default=None, help="unset: the model's sampling default")
    q.add_argument(
        "--fid-labels",
        choices=["seed", "null"],
        default=None,
        help="seed: each sample's label from its seed; null: unconditional (unset: the model's rule)",
    )
    q.add_argument(
        "--fid-guidance",
        type=float,
        default=None,
        help="guidance weight, mean = variance (unset: the model's)",
    )


def main(argv: list[str] | None = None, prog: str = "python -m model.training.evaluation.evaluate") -> int:
    args = build_parser(prog).parse_args(argv)

    try:
        if args.fid:
            judge_path_for(args.data, args.fid)  # before any work: other data needs a judge file
        vae = load_model(args.model, preset=args.preset, device=args.device)
        hp = vae.hp
        data = load_data(args, vae)
    except (CheckpointError, DataError, JudgeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.fid_labels == "seed" and not hp.conditional:
        print("error: --fid-labels seed needs a class-conditional model", file=sys.stderr)
        return 2
    result = {
        "model": str(args.model),
        "data": args.data,
        "split": args.split,
        **evaluate_elbo(vae, data, args.batch_size, args.seed, not args.unconditional, progress=True),
        "labels": "null (unconditional)" if args.unconditional or not hp.conditional else "true labels",
    }
    if args.label_agreement and hp.conditional and not hp.low_res:
        train = load_split(
            args.data,
            "train",
            hp.image_size,
            hp.image_channels,
            args.data_format,
            args.test_data,
            pool=args.data_pool,
        )
        result["label_agreement"] = label_agreement(
            vae, train, args.label_agreement, args.temperature, args.guidance
        )
    if args.out:
        result.update(write_figures(vae, data, Path(args.out), args))
    if args.fid:
        try:
            result["sample_quality"] = sample_quality(vae, data, args)
        except (JudgeError, DataError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
