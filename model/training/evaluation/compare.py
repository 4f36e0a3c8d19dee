"""Sample quality of model folders and cascade folders side by side, at the same settings and seeds:
digit FID, precision, recall, confident share and label accuracy (model.training.evaluation.quality), the
images each was trained on, and a grid per row.

    python -m model.training.evaluation.compare runs/single32/model runs/cascade16 -n 1000 --out runs/compare

Every folder draws images from seeds 0 .. samples-1 with labels from the seeds (balanced: seed mod
classes) at each --temperature x --guidance; a cascade passes both to every stage, and its
super-resolution stages keep their own low_res_noise. FID is biased upwards at small counts:
compare only rows made with the same --samples.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ...cascade import Cascade, CascadeStage, StageOptions, is_cascade_folder, load_cascade
from ...checkpoint import CheckpointError, load_model
from ...imageio import image_grid, save_png
from ...sampling import label_from_seed
from ..data import DataError
from .judge import JudgeError
from .quality import INCEPTION_NOTE, load_quality_judge


@dataclass
class Entry:
    """A folder to compare: a cascade of one stage for a plain model folder."""

    name: str
    cascade: Cascade

    @classmethod
    def load(cls, folder: Path) -> Entry:
        if is_cascade_folder(folder):
            return cls(folder.name, load_cascade(folder, device="cpu"))
        vae = load_model(folder, device="cpu")
        name = folder.parent.name if folder.name == "model" else folder.name  # a run's model folder
        return cls(name, Cascade([CascadeStage(str(folder), vae)]))

    def describe(self) -> str:
        """Each stage's size, attention and training images (e.g. "16 (attn 16,8) 48k + 16->32 48k")."""
        parts = []
        for s in self.cascade.stages:
            hp, seen = s.vae.hp, s.vae.provenance.get("images_seen")
            size = f"{hp.low_res}->{hp.image_size}" if hp.low_res else str(hp.image_size)
            attention = f" (attention {hp.attention})" if hp.attention else ""
            parts.append(f"{size}{attention}, {seen // 1000 if seen else '?'}k images")
        return " + ".join(parts)

    def images_seen(self) -> int | None:
        seen = [s.vae.provenance.get("images_seen") for s in self.cascade.stages]
        return None if None in seen else sum(seen)

    def draw(
        self, n: int, temperature: float, guidance: float, batch_size: int
    ) -> tuple[torch.Tensor, list[int]]:
        """n images from seeds 0..n-1 with labels from the seeds (-1: none, for an unconditional
        base), and those labels."""
        base = self.cascade.stages[0].vae.hp
        weights = (guidance, guidance) if guidance else None
        options = [
            StageOptions(temperature=temperature, guidance=weights if s.vae.hp.conditional else None)
            for s in self.cascade.stages
        ]
        images, labels = [], []
        for start in range(0, n, batch_size):
            seeds = list(range(start, min(n, start + batch_size)))
            batch_labels = [label_from_seed(s, base.num_classes) if base.conditional else -1 for s in seeds]
            asked = batch_labels if base.conditional else None
            images.append(self.cascade.sample(len(seeds), asked, seeds, options))
            labels += batch_labels
        return torch.cat(images), labels


def markdown(rows: list[dict], about: dict) -> str:
    n = rows[0]["samples"]
    lines = [
        f"Digit FID ({n} samples per row, seeds 0..{n - 1}, labels from the seeds; judge "
        f"{Path(about['judge']).name}, {about['judge_test_accuracy']:.1%} on test digits)",
        "",
        "| folder | stages | images seen | temperature | guidance | FID | precision | recall | label acc. |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        seen = f"{r['images_seen']:,}" if r["images_seen"] else "?"
        lines.append(
            f"| {r['name']} | {r['stages']} | {seen} | {r['temperature']} | {r['guidance']} | {r['fid']:.2f} "
            f"| {r['precision']:.3f} | {r['recall']:.3f} | {r.get('label_accuracy', float('nan')):.1%} |"
        )
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m model.training.evaluation.compare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"The judge is the bundled digit judge for --data mnist, else --judge. {INCEPTION_NOTE}.",
    )
    p.add_argument("folders", nargs="+", type=Path, help="model folders and cascade folders")
    p.add_argument("-n", "--samples", type=int, default=1000, help="samples per row (seeds 0..samples-1)")
    p.add_argument("--temperature", type=float, nargs="+", default=[1.0], help="temperatures to try")
    p.add_argument("--guidance", type=float, nargs="+", default=[0.0, 0.5], help="guidance weights to try")
    p.add_argument("--data", default="mnist", help="the models' data ('mnist', a folder, ...)")
    p.add_argument("--data-format", default="auto")
    p.add_argument("--judge", default=None, help="judge file (default for mnist: the bundled judge)")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--out", type=Path, default=None, help="folder for table.json, table.md and the grids")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        entries = [Entry.load(f) for f in args.folders]
        judge, about = load_quality_judge(args.judge, args.data, args.data_format)
    except (CheckpointError, DataError, JudgeError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows = []
    for entry, t, g in itertools.product(entries, args.temperature, args.guidance):
        t0 = time.perf_counter()
        images, labels = entry.draw(args.samples, t, g, args.batch_size)
        score = judge.score(images, torch.tensor(labels))
        row = {"name": entry.name, "stages": entry.describe(), "images_seen": entry.images_seen()}
        row |= {"temperature": t, "guidance": g, **score, "seconds": round(time.perf_counter() - t0, 1)}
        if args.out is not None:
            grid = args.out / f"{entry.name}_t{t:g}_g{g:g}.png"
            save_png(image_grid(images[:100], ncols=10), grid)
            row["grid"] = grid.name
        rows.append(row)
        print(json.dumps(row), flush=True)
    table = markdown(rows, about)
    print(table)
    if args.out is not None:
        (args.out / "table.json").write_text(json.dumps({"about": about, "rows": rows}, indent=2) + "\n")
        (args.out / "table.md").write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
