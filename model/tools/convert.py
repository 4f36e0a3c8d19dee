"""Import a released checkpoint into our folder format, or write a cascade folder naming two.

    vdvae convert cifar10-seed0-iter-900000-model-ema.th --preset cifar10 --out weights/cifar10
    vdvae convert i32_ema_weights.pt --family visual-vae --preset imagenet32 --out weights/i32
    vdvae convert i64_ema_weights.pt --family visual-vae --preset imagenet64 --out weights/i64
    vdvae convert --cascade weights/i32 weights/i64 --out weights/imagenet64

openai/vdvae files (`*-model-ema.th`) and visual-vae files (`*_ema_weights.pt`, downloaded from the
links in tcl9876/visual-vae's README) are recognised by their keys; --family says it explicitly.
A model trained with another configuration takes --config CONFIG.json instead of --preset: for
visual-vae their config's sections as JSON (at least "model"), for openai/vdvae its hyperparameters.
The weights are copied unchanged, so the imported model gives the same numbers; the folder records
the source file's name and SHA-256, its sampling defaults (visual-vae: as their evaluate.py samples)
and, for a class-conditional model, its class names (ImageNet-1k's and CIFAR-10's ship with the
package; --classes names a list or a file with one class per line).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..cascade import CascadeStage, StageOptions, save_cascade_folder
from ..checkpoint import CheckpointError, load_model, save_model_folder
from ..classes import BUILTIN, ClassNames, check_classes
from ..families import FAMILIES, get_family
from ..files import sha256_file

# The class names a converted model gets by default, by its number of classes.
DEFAULT_CLASSES = {1000: "imagenet1k", 10: "cifar10"}


def class_names(spec: str | None, num_classes: int) -> ClassNames | None:
    """--classes: a built-in list, a text file (one class per line, names separated by ", "), "none",
    or (None) the built-in list for the model's number of classes if there is one."""
    if not num_classes or spec == "none":
        if spec not in (None, "none"):
            raise CheckpointError("--classes: this model is unconditional: it has no classes to name")
        return None
    if spec is None:
        spec = DEFAULT_CLASSES.get(num_classes)
        if spec is None:
            return None
    if spec in BUILTIN:
        classes = ClassNames.builtin(spec)
    else:
        path = Path(spec)
        if not path.is_file():
            raise CheckpointError(
                f"--classes {spec!r}: neither a built-in list ({', '.join(BUILTIN)}) nor a file"
            )
        classes = ClassNames.from_lines(path.read_text())
    try:
        check_classes(classes, num_classes, f"--classes {spec}")
    except ValueError as e:
        raise CheckpointError(str(e)) from None
    return classes


def read_config_file(path: str | Path) -> dict[str, Any]:
    """--config: a JSON object (visual-vae: their config's sections; openai/vdvae: its hps)."""
    path = Path(path)
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"--config {path}: not a readable JSON file: {e}") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"--config {path}: expected a JSON object")
    return config


def convert(
    src: str | Path,
    preset: str | None,
    out: str | Path,
    family: str | None = None,
    config: str | Path | None = None,
    classes: str | None = None,
) -> Path:
    """Load `src` (checked against the preset or configuration) and write it as a model folder."""
    src, out = Path(src), Path(out)
    if preset is not None and config is not None:
        raise CheckpointError("give --preset or --config, not both")
    architecture = read_config_file(config) if config is not None else preset
    vae = load_model(src, preset=architecture, device="cpu", family=family)
    fam = get_family(vae.family)
    resolved = vae.provenance["preset"]
    provenance = {
        **vae.provenance,
        "sha256": sha256_file(src),
        "weights": "EMA" if "ema" in src.name else "non-EMA",
        "paper": fam.paper,
    }
    if config is not None:
        provenance["config"] = Path(config).name
    if resolved in fam.published:
        provenance["published"] = fam.published[resolved]
    vae.classes = class_names(classes, vae.hp.num_classes)
    return save_model_folder(vae, out, provenance)


def cascade(stages: list[str | Path], out: str | Path) -> Path:
    """A cascade folder at `out` naming model folders that sit beside it (the base first, then each
    super-resolution stage), each stage with its model's own sampling defaults."""
    out = Path(out)
    loaded = []
    for folder in map(Path, stages):
        if folder.resolve().parent != out.resolve().parent:
            raise CheckpointError(
                f"--cascade: {folder} must sit beside {out} (the cascade names its stages as siblings)"
            )
        loaded.append(CascadeStage(folder.name, load_model(folder, device="cpu"), StageOptions()))
    try:
        return save_cascade_folder(out, loaded)
    except ValueError as e:
        raise CheckpointError(f"--cascade: {e}") from None


def main(argv: list[str] | None = None, prog: str = "python -m model.tools.convert") -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=__doc__.replace("vdvae convert", prog),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("src", nargs="?", help="released state dict (*-model-ema.th, *_ema_weights.pt)")
    parser.add_argument(
        "--family", choices=sorted(FAMILIES), help="the file's family (default: from its keys)"
    )
    presets = sorted({p for f in FAMILIES.values() for p in f.presets})
    parser.add_argument(
        "--preset",
        choices=presets,
        default=None,
        help="architecture of the file (default: inferred from its tensor shapes)",
    )
    parser.add_argument("--config", help="JSON configuration of a model trained with another config")
    parser.add_argument(
        "--classes",
        help=f"class names: {', '.join(BUILTIN)}, a text file (one class per line), or none "
        "(default: ImageNet-1k's for 1,000 classes, CIFAR-10's for 10)",
    )
    parser.add_argument(
        "--cascade", nargs="+", metavar="FOLDER", help="write a cascade folder naming these model folders"
    )
    parser.add_argument("--out", required=True, help="output folder, e.g. weights/cifar10")
    args = parser.parse_args(argv)
    if (args.src is None) == (args.cascade is None):
        parser.error("give a checkpoint file to convert, or --cascade with model folders")
    try:
        if args.cascade:
            folder = cascade(args.cascade, args.out)
        else:
            folder = convert(args.src, args.preset, args.out, args.family, args.config, args.classes)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
