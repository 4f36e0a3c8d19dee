"""The client commands of `vdvae`: sample (service.cli.sampling), reconstruct, upscale, encode, decode,
interpolate, models.

Each sends only the options the user gave, so the service's defaults (and a model's own sampling
defaults) apply to the rest, and writes the service's PNG bytes as they came.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model.files import atomic_write, atomic_write_bytes

from ..client import AsyncClient, Encoding
from . import sampling
from .options import (
    UsageError,
    add_sampling_options,
    call_options,
    class_arg,
    connection_parser,
    run_client_command,
)


def image_file(path: str) -> str:
    if not Path(path).is_file():
        raise UsageError(f"no image file {path}")
    return path


# --------------------------------------------------------------------------------------------
# reconstruct
# --------------------------------------------------------------------------------------------


def reconstruct_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", help="a PNG or JPEG of the model's size and channels")
    p.add_argument("--layers", type=int, help="top latent layers taken from the image (default: all)")
    add_sampling_options(p, guidance=False)
    p.add_argument("-o", "--out", default="reconstruction.png", help="(default: reconstruction.png)")


async def reconstruct(client: AsyncClient, args: argparse.Namespace) -> None:
    options = call_options(args, "layers", "temperature", "seed", "label")
    rec = await client.reconstruct(image_file(args.image), **options)
    atomic_write_bytes(args.out, rec.image.png)
    print(
        f"wrote {args.out}: {rec.layers} top latent layer(s) from {args.image} ({rec.bits:.1f} bits), "
        f"the rest from the prior; seed {rec.image.seed}"
    )


# --------------------------------------------------------------------------------------------
# upscale
# --------------------------------------------------------------------------------------------


def upscale_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", help="a PNG or JPEG of the super-resolution model's low_res size and channels")
    p.add_argument(
        "--stage", type=int, help="when --model is a cascade: its super-resolution stage (default 1)"
    )
    p.add_argument("--low-res-noise", type=float, help="std of the noise on the input (default: the model's)")
    add_sampling_options(p)
    p.add_argument("-o", "--out", default="upscaled.png", help="(default: upscaled.png)")


async def upscale(client: AsyncClient, args: argparse.Namespace) -> None:
    options = call_options(args, "stage", "low_res_noise", "temperature", "seed", "label", "guidance")
    (image,) = await client.upscale(image_file(args.image), **options)
    atomic_write_bytes(args.out, image.png)
    label = "" if image.label is None else f", label {image.label}"
    model = options.get("model", "the default model")
    print(f"wrote {args.out}: {args.image} super-resolved by {model}; seed {image.seed}{label}")


# --------------------------------------------------------------------------------------------
# encode and decode
# --------------------------------------------------------------------------------------------


def encode_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", help="a PNG or JPEG of the model's size and channels")
    p.add_argument("--latents", type=int, metavar="K", help="save the top K layers' z to --out")
    p.add_argument("--seed", type=int, help="seed of the posterior draw")
    p.add_argument(
        "--label", type=class_arg, help="the image's class (class-conditional models): index or name"
    )
    p.add_argument("-o", "--out", default="z.npz", help="where --latents go (default: z.npz)")
    p.add_argument("--json", action="store_true", help="print the result as JSON, not a table")


def encoding_json(enc: Encoding) -> dict[str, Any]:
    return {
        "model": enc.model,
        "seed": enc.seed,
        "dims": enc.dims,
        "kl_bits": enc.kl_bits.tolist(),
        "kl_bits_total": float(enc.kl_bits.sum()),
        "rate_bits_per_dim": enc.rate_bits_per_dim,
        "distortion_bits_per_dim": enc.distortion_bits_per_dim,
        "elbo_bits_per_dim": enc.elbo_bits_per_dim,
        "latents": [{"layer": i, "shape": list(z.shape)} for i, z in enumerate(enc.latents)],
    }


def encoding_table(enc: Encoding, shapes: list[list[int]]) -> str:
    total = float(enc.kl_bits.sum())
    lines = [
        f"model {enc.model}, seed {enc.seed}: {enc.elbo_bits_per_dim:.4f} bits/dim = rate "
        f"{enc.rate_bits_per_dim:.4f} + distortion {enc.distortion_bits_per_dim:.4f} "
        f"({enc.dims} dims); KL {total:.1f} bits over {len(enc.kl_bits)} latent layers",
        f"{'layer':>5}  {'z shape':>10}  {'KL bits':>9}  {'share':>6}",
    ]
    for i, (bits, shape) in enumerate(zip(enc.kl_bits, shapes)):
        share = 100 * bits / total if total > 0 else 0.0
        lines.append(f"{i:>5}  {'x'.join(map(str, shape)):>10}  {bits:>9.2f}  {share:>5.1f}%")
    return "\n".join(lines)


def save_latents(path: str, enc: Encoding) -> None:
    """z0 .. z{K-1} (float32), with the model's name and the seed, as one .npz file."""
    arrays = {f"z{i}": z for i, z in enumerate(enc.latents)}

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, model=np.array(enc.model), seed=np.array(enc.seed), **arrays)

    atomic_write(path, write)


def load_latents(path: str) -> tuple[list[np.ndarray], str | None]:
    """The z of an .npz that `encode --latents` wrote (z0, z1, ...), and its model's name."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            layers = sorted(int(k[1:]) for k in npz.files if k[:1] == "z" and k[1:].isdigit())
            keys = [f"z{i}" for i in layers]
            latents = [npz[k].astype(np.float32) for k in keys]
            model = str(npz["model"]) if "model" in npz.files else None
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read latents from {path}: {e}") from None
    if not latents or keys != [f"z{i}" for i in range(len(keys))]:
        raise UsageError(f"{path} holds no latents z0, z1, ... (as `vdvae encode --latents K` writes)")
    return latents, model


async def encode(client: AsyncClient, args: argparse.Namespace) -> None:
    enc = await client.encode(image_file(args.image), **call_options(args, "latents", "seed", "label"))
    if args.json:
        print(json.dumps(encoding_json(enc), indent=2))
    else:
        print(encoding_table(enc, (await client.model(enc.model)).latent_shapes))
    if enc.latents:
        save_latents(args.out, enc)
        print(f"wrote {args.out}: z of the top {len(enc.latents)} latent layer(s)")


def decode_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("latents", help="an .npz written by `vdvae encode --latents K`")
    add_sampling_options(p)
    p.add_argument("-o", "--out", default="decoded.png", help="(default: decoded.png)")


async def decode(client: AsyncClient, args: argparse.Namespace) -> None:
    latents, model = load_latents(args.latents)
    options = call_options(args, "temperature", "seed", "label", "guidance")
    if args.model is None and model is not None:
        options["model"] = model  # the model that encoded them
    images = await client.decode(latents, **options)
    atomic_write_bytes(args.out, images[0].png)
    print(f"wrote {args.out}: the top {len(latents)} latent layer(s) given, seed {images[0].seed}")


# --------------------------------------------------------------------------------------------
# interpolate
# --------------------------------------------------------------------------------------------


def path_end(text: str) -> int | str:
    """An end of the path: a seed (an integer) or an image file."""
    try:
        return int(text)
    except ValueError:
        return image_file(text)


def interpolate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("start", help="a seed (its sample) or an image file (its reconstruction)")
    p.add_argument("end", help="a seed or an image file")
    p.add_argument(
        "-n", "--steps", type=int, default=8, help="images on the path, both ends included (default: 8)"
    )
    p.add_argument("--layers", type=int, help="top latent layers interpolated (default: all)")
    add_sampling_options(p)
    p.add_argument("-o", "--out", default="interpolation.png", help="the row, one PNG (default: %(default)s)")
    p.add_argument("--frames", metavar="DIR", help="also write each image as DIR/step_000.png ...")


async def interpolate(client: AsyncClient, args: argparse.Namespace) -> None:
    options = call_options(args, "layers", "temperature", "seed", "label", "guidance")
    path = await client.interpolate(path_end(args.start), path_end(args.end), args.steps, **options)
    atomic_write_bytes(args.out, path.grid_png())
    if args.frames:
        Path(args.frames).mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(path):
            atomic_write_bytes(Path(args.frames) / f"step_{i:03d}.png", image.png)
    label = "no label" if path.label is None else f"label {path.label}"
    frames = f" and {len(path)} frames to {args.frames}/" if args.frames else ""
    print(
        f"wrote {args.out}{frames}: {len(path)} images from {args.start} to {args.end} through the top "
        f"{path.layers} latent layer(s); seed {path.seed}, {label}"
    )


# --------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------


def models_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the models as JSON, not a table")


async def models(client: AsyncClient, args: argparse.Namespace) -> None:
    served = await client.models()
    if args.json:
        print(json.dumps([asdict(m) for m in served], indent=2))
        return
    print(
        f"{'model':<16} {'family':<10} {'image':>9} {'layers':>6} {'classes':>7} {'parameters':>11}  "
        "head     device  batch"
    )
    for m in served:
        name = m.id + (" *" if m.default else "")
        image = f"{m.image_size}x{m.image_size}x{m.image_channels}"
        print(
            f"{name:<16} {m.family:<10} {image:>9} {m.num_layers:>6} {m.num_classes or '-':>7} "
            f"{m.parameters:>11,}  {m.output_head:<8} {m.device:<7} {m.limits.get('max_batch_size', '?')}"
        )
    print("* the default model")
    named = [m for m in served if m.classes]
    for m in named:
        shown = ", ".join(f"{i} {c}" for i, c in enumerate(m.classes[:5])) + (
            ", ..." if len(m.classes) > 5 else ""
        )
        print(f"{m.id}: classes {shown} (--label takes an index or a name)")


# --------------------------------------------------------------------------------------------
# The table of commands
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    description: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[AsyncClient, argparse.Namespace], Awaitable[None]]
    examples: str


COMMANDS = {
    "sample": Command(
        "Draw images from the model's prior: a grid PNG, or one PNG per image into a folder.",
        sampling.add_arguments,
        sampling.run,
        sampling.EXAMPLES,
    ),
    "reconstruct": Command(
        "Reconstruct an image: its top --layers latent layers from the image, the rest from the prior.",
        reconstruct_arguments,
        reconstruct,
        "examples:\n  {prog} digit.png --layers 8 --seed 0 -o rec.png\n"
        "  {prog} digit.png --layers 0 --label 7 -o prior.png      # no layer from the image\n",
    ),
    "upscale": Command(
        "Super-resolve a low-resolution image with a super-resolution model (or a cascade's stage).",
        upscale_arguments,
        upscale,
        "examples:\n  {prog} small.png --model sr16to32 --seed 0 -o big.png\n"
        "  {prog} small.png --model digits-cascade --label 7 --low-res-noise 0.15 -o big.png\n",
    ),
    "encode": Command(
        "An image's KL per latent layer in bits, its rate, distortion and ELBO in bits per dim, and "
        "on request its top layers' latents (z), saved as .npz for `vdvae decode`.",
        encode_arguments,
        encode,
        "examples:\n  {prog} digit.png\n  {prog} digit.png --json\n  {prog} digit.png --latents 4 -o z.npz\n",
    ),
    "decode": Command(
        "An image from the top latent layers saved by `vdvae encode --latents K`; the layers below "
        "come from the prior.",
        decode_arguments,
        decode,
        "examples:\n  {prog} z.npz -o out.png\n  {prog} z.npz --temperature 0.5 --seed 3 -o out.png\n",
    ),
    "interpolate": Command(
        "Images on a path from START to END (each a seed or an image file) through the latent layers: "
        "one row PNG, left to right.",
        interpolate_arguments,
        interpolate,
        "examples:\n  {prog} 1 2 --steps 8 --label 3 -o path.png\n"
        "  {prog} digit.png 7 --steps 6 --frames frames/   # a digit to seed 7's sample\n"
        "  {prog} 1 2 --layers 4 --seed 0                  # only the top 4 layers move\n",
    ),
    "models": Command(
        "The served models: image size, latent layers, classes, parameters, and the batch size.",
        models_arguments,
        models,
        "examples:\n  {prog}\n  {prog} --json\n  {prog} --local weights/\n",
    ),
}


def build_parser(name: str, prog: str) -> argparse.ArgumentParser:
    command = COMMANDS[name]
    p = argparse.ArgumentParser(
        prog=prog,
        description=command.description,
        epilog=command.examples.format(prog=prog),
        parents=[connection_parser()],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    command.arguments(p)
    return p


def run_command(name: str, argv: list[str], prog: str) -> int:
    """`vdvae NAME ARGV`: parse, run against the service, and say how it went (the exit code)."""
    args = build_parser(name, prog).parse_args(argv)
    return run_client_command(prog, args, lambda client: COMMANDS[name].run(client, args))
