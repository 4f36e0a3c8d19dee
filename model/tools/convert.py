"""Import an official openai/vdvae checkpoint into our folder format.

    python -m model.tools.convert cifar10-seed0-iter-900000-model-ema.th --preset cifar10 \\
        --out weights/cifar10

The weights are copied unchanged (state-dict compatible), so the imported model gives the same
numbers; the folder records the source file's name and SHA-256.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..checkpoint import CheckpointError, load_model, save_model_folder
from ..files import sha256_file
from ..presets import PRESETS

# Test NLL of the released models, from the openai/vdvae README.
PUBLISHED_BPD = {"cifar10": 2.87, "imagenet32": 3.80, "imagenet64": 3.52, "ffhq256": 0.61, "ffhq1024": 2.42}


def convert(src: str | Path, preset: str | None, out: str | Path) -> Path:
    """Load `src` (checked against the preset) and write it as a model folder at `out`."""
    src, out = Path(src), Path(out)
    vae = load_model(src, preset=preset, device="cpu")
    resolved = vae.provenance["preset"]
    provenance = {
        **vae.provenance,
        "sha256": sha256_file(src),
        "weights": "EMA" if "ema" in src.name else "non-EMA (*-model.th)",
    }
    if resolved in PUBLISHED_BPD:
        provenance["published_test_bpd"] = PUBLISHED_BPD[resolved]
    return save_model_folder(vae, out, provenance)


def main(argv: list[str] | None = None, prog: str = "python -m model.tools.convert") -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=__doc__.replace("python -m model.tools.convert", prog),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("src", help="official *-model-ema.th or *-model.th file")
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help="architecture of the file (default: inferred from its tensor shapes)",
    )
    parser.add_argument("--out", required=True, help="output model folder, e.g. weights/cifar10")
    args = parser.parse_args(argv)
    try:
        folder = convert(args.src, args.preset, args.out)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
