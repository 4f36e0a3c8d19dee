"""`vdvae sample`: images from the prior, as one grid PNG or as one PNG per image in a folder.

Work larger than one request is split into requests of the model's batch size (GET /v1/models
reports it), `--concurrency` of them in flight, with a progress bar. Image i always has seed + i,
so the split changes nothing in the images. A folder is resumable: image i goes to NNNNNN.png,
written atomically (a temporary file renamed into place, so a killed run leaves whole images or
none), the request's parameters and first seed are kept in vdvae-sample.json, and a rerun asks only
for the images that are missing. A grid is the PNG the service sends for `Accept: image/png`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from model.files import atomic_write_bytes, atomic_write_text
from model.imageio import grid_columns, grid_png

from ..client import AsyncClient, GeneratedImage, Images, ModelInfo
from .options import UsageError, add_sampling_options, call_options

MANIFEST = "vdvae-sample.json"
# What makes two runs' images the same images: a folder only takes more of the same.
IDENTITY = ("model", "seed", "temperature", "label", "guidance")

EXAMPLES = """examples:
  {prog} -n 16 --label 3 --guidance 1,1 --temperature 0.8 --seed 1 -o threes.png
  {prog} -n 8 --seed 7 --each -o eights/              # one PNG per image
  {prog} -n 10000 -o samples/                         # bulk; run it again to resume
  {prog} -n 4 --local weights/mnist -o four.png       # no service: the model in this process
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-n", type=int, default=1, help="number of images (default: 1)")
    add_sampling_options(p)
    p.add_argument(
        "-o",
        "--out",
        default="sample.png",
        help="a .png file: the images' grid (default: sample.png); a folder (a name without a "
        "suffix, or --each): one PNG per image, resumable",
    )
    p.add_argument("--each", action="store_true", help="one PNG per image: --out is a folder")
    p.add_argument("--concurrency", type=int, default=4, help="requests in flight for large n (default: 4)")


async def served_model(client: AsyncClient, name: str | None) -> ModelInfo:
    """The named model's metadata, or the service's default model's."""
    if name is not None:
        return await client.model(name)
    return next(m for m in await client.models() if m.default)


def request_size(info: ModelInfo) -> int:
    """Images per request: one full batch of the model, within the per-request limit."""
    limits = info.limits
    return max(1, min(limits.get("max_batch_size", 16), limits.get("max_images_per_request", 16)))


def requests_for(indices: Sequence[int], size: int) -> list[tuple[int, int]]:
    """(start, count) requests covering the sorted `indices`: contiguous runs, at most `size` each."""
    out: list[tuple[int, int]] = []
    for i in indices:
        if out and out[-1][0] + out[-1][1] == i and out[-1][1] < size:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((i, 1))
    return out


async def fetch(
    client: AsyncClient,
    requests: Sequence[tuple[int, int]],
    seed: int | None,
    options: dict[str, Any],
    concurrency: int,
    on_images: Callable[[int, Images], Awaitable[None]],
) -> None:
    """Send the requests, `concurrency` at a time, and hand each answer to on_images(start, images).
    The first failure cancels the rest and is raised."""
    pending = list(reversed(requests))

    async def worker() -> None:
        while pending:
            start, count = pending.pop()
            images = await client.sample(count, seed=None if seed is None else seed + start, **options)
            await on_images(start, images)

    workers = [asyncio.create_task(worker()) for _ in range(max(1, min(concurrency, len(requests))))]
    try:
        await asyncio.gather(*workers)
    finally:
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)


def folder_parameters(folder: Path, wanted: dict[str, Any]) -> dict[str, Any]:
    """The parameters of the images in `folder`: `wanted` (the seed drawn when not given) for a new
    folder, recorded in its manifest; the recorded ones when `wanted` agrees with them."""
    wanted = json.loads(json.dumps(wanted))  # tuples as lists, as the manifest holds them
    manifest = folder / MANIFEST
    if manifest.is_file():
        recorded = json.loads(manifest.read_text())
        differ = [
            f"{k} {recorded.get(k)!r} there, {wanted[k]!r} asked"
            for k in IDENTITY
            if recorded.get(k) != wanted[k] and not (k == "seed" and wanted[k] is None)
        ]
        if differ:
            raise UsageError(
                f"{folder} holds other samples ({'; '.join(differ)}): use another folder, or the same "
                f"parameters to add to it (see {manifest})"
            )
        return recorded
    if any(folder.glob("*.png")):
        raise UsageError(f"{folder} holds PNG files but no {MANIFEST}: choose an empty or new folder")
    params = {**wanted, "seed": secrets.randbelow(2**32) if wanted["seed"] is None else wanted["seed"]}
    atomic_write_text(manifest, json.dumps(params, indent=2) + "\n")
    return params


def progress(total: int, done: int, what: str, show: bool) -> tqdm:
    return tqdm(total=total, initial=done, unit="img", desc=what, disable=not show, dynamic_ncols=True)


async def sample_folder(client: AsyncClient, args: argparse.Namespace, info: ModelInfo) -> None:
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    for stray in folder.glob(".*.png.*.tmp"):  # a run killed while writing leaves these
        stray.unlink()
    options = call_options(args, "temperature", "label", "guidance")
    wanted = {"model": info.id, **{k: getattr(args, k) for k in IDENTITY if k != "model"}}
    seed = folder_parameters(folder, wanted)["seed"]
    n, width = args.n, max(6, len(str(args.n - 1)))
    paths = [folder / f"{i:0{width}d}.png" for i in range(n)]
    missing = [i for i, p in enumerate(paths) if not p.exists()]
    requests = requests_for(missing, request_size(info))

    with progress(n, n - len(missing), str(folder), show=bool(missing)) as bar:

        async def write(start: int, images: Images) -> None:
            def write_all() -> None:
                for k, image in enumerate(images):
                    atomic_write_bytes(paths[start + k], image.png)

            await asyncio.to_thread(write_all)
            bar.update(len(images))

        await fetch(client, requests, seed, options, args.concurrency, write)
    print(
        f"{folder}: {n} images, seeds {seed}..{seed + n - 1} ({len(missing)} written now, "
        f"{n - len(missing)} already there)"
    )


async def sample_grid(client: AsyncClient, args: argparse.Namespace, info: ModelInfo) -> None:
    out = Path(args.out)
    size = request_size(info)
    seed = args.seed
    if seed is None and args.n > size:  # several requests: one first seed for all of them
        seed = secrets.randbelow(2**32)
    requests = requests_for(range(args.n), size)
    answers: dict[int, Images] = {}
    with progress(args.n, 0, str(out), show=len(requests) > 1) as bar:

        async def keep(start: int, images: Images) -> None:
            answers[start] = images
            bar.update(len(images))

        options = call_options(args, "temperature", "label", "guidance")
        await fetch(client, requests, seed, options, args.concurrency, keep)
    images: list[GeneratedImage] = [im for start in sorted(answers) for im in answers[start]]
    data = images[0].png if len(images) == 1 else grid_png(np.stack([im.array() for im in images]))
    atomic_write_bytes(out, data)
    seeds = f"seed {images[0].seed}" if len(images) == 1 else f"seeds {images[0].seed}..{images[-1].seed}"
    shape = "" if len(images) == 1 else f", a grid {grid_columns(len(images))} wide"
    labels = {im.label for im in images} - {None}
    told = f", labels {[im.label for im in images]}" if labels and args.label is None else ""
    print(f"wrote {out}: {len(images)} image(s), {seeds}{shape}{told}")


async def run(client: AsyncClient, args: argparse.Namespace) -> None:
    if args.n < 1:
        raise UsageError(f"-n must be at least 1, got {args.n}")
    if args.concurrency < 1:
        raise UsageError(f"--concurrency must be at least 1, got {args.concurrency}")
    info = await served_model(client, args.model)
    out = Path(args.out)
    if args.each or out.is_dir() or not out.suffix:
        await sample_folder(client, args, info)
    elif out.suffix.lower() == ".png":
        await sample_grid(client, args, info)
    else:
        raise UsageError(f"-o {out}: a grid is a .png file, and one PNG per image goes into a folder")
