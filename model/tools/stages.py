"""A picture of samples forming coarse to fine: one row per image, one column per resolution of the
top-down pass: the preview after that resolution's latent layers (the layers below at their prior
mean; VDVAE.sample_stages), the last column the sample itself.

    python -m model.tools.stages weights/mnist --labels 0,1,2,3,4,5,6,7,8,9 --seed 0 \
        --temperature 0.8 --out docs/sample-stages.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import CheckpointError, load_model
from ..imageio import image_grid, save_png


def stages_grid(
    folder: str | Path,
    n: int,
    seed: int,
    temperature: float,
    labels: list[int] | None,
    guidance: tuple[float, float] | None,
) -> tuple[np.ndarray, list[str]]:
    """The grid (uint8 HWC) and its column titles."""
    vae = load_model(folder, device="cpu")
    stages = list(vae.sample_stages(n, temperature, labels=labels, guidance=guidance, seeds=seed))
    columns = torch.stack([s.images for s in stages], dim=1)  # (n, stages, H, W, C)
    grid = image_grid(columns.reshape(-1, *columns.shape[2:]), ncols=len(stages))
    titles = [f"{s.resolution}x{s.resolution} ({s.layers} layer{'s' * (s.layers > 1)})" for s in stages]
    return grid, titles


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m model.tools.stages",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="model folder, e.g. weights/mnist")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--n", type=int, default=8, help="images (rows); with --labels, one per label")
    parser.add_argument("--seed", type=int, default=0, help="row i uses seed + i")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--labels", default=None, help="comma-separated class labels, one per row")
    parser.add_argument("--guidance", default=None, help="w_mean,w_var")
    parser.add_argument("--scale", type=int, default=3, help="pixels per image pixel in the picture")
    args = parser.parse_args(argv)
    labels = [int(x) for x in args.labels.split(",")] if args.labels else None
    n = len(labels) if labels else args.n
    guidance = tuple(float(x) for x in args.guidance.split(",")) if args.guidance else None
    try:
        grid, titles = stages_grid(args.model, n, args.seed, args.temperature, labels, guidance)
    except (CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    save_png(grid.repeat(args.scale, axis=0).repeat(args.scale, axis=1), args.out)
    print(f"wrote {args.out}: {n} rows; columns " + ", ".join(titles))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
