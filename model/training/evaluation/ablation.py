"""The sample-quality table of one model folder: held-out bits per dim, then digit FID, precision,
recall, confident share and label accuracy for a fixed list of sampling settings, and a grid each.

    python -m model.training.evaluation.ablation weights/mnist --out runs/quality/mnist
    python -m model.training.evaluation.ablation weights/mnist --url http://127.0.0.1:8000  # + over HTTP
    python -m model.training.evaluation.ablation weights/mnist --tune --write-defaults  # choose the defaults

Settings: the null label (unconditional prior) at temperatures 0.6, 0.8 and 1.0; labels from the
seeds (balanced: seed mod 10) with guidance 0, 1 and 2 at --cond-temperature; the model's own
sampling defaults (config.json); and the real test images for scale. Every setting draws the same
seeds (0 .. samples-1), so two models run with the same --samples are compared image for image;
FID is biased upwards at small counts, so compare only tables made with the same --samples.

--tune adds labelled settings over TUNE_TEMPERATURES x TUNE_GUIDANCE and recommends the one with the
lowest FID among those whose label accuracy reaches --min-label-accuracy; --write-defaults writes it
into the model's config.json as its sampling defaults.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ...checkpoint import CheckpointError, load_model, write_sampling_defaults
from ...imageio import image_grid, save_png
from ...sampling import SamplingDefaults
from ...vae import VDVAE
from ..data import DataError, ImageSet, load_split
from .evaluate import evaluate_elbo
from .judge import JudgeError
from .quality import INCEPTION_NOTE, QualityJudge, Setting, check_judge_fits, draw, load_quality_judge

TUNE_TEMPERATURES = (0.7, 0.8, 0.9, 1.0)
TUNE_GUIDANCE = (0.0, 0.5, 1.0)


def tune_settings(table: list[Setting]) -> list[Setting]:
    """The labelled settings --tune tries, less those already in the table."""
    done = {(s.temperature, s.labels, s.guidance) for s in table}
    return [
        Setting(f"tune: labels from seeds, temperature {t}, guidance {g}", t, "seed", g)
        for t in TUNE_TEMPERATURES
        for g in TUNE_GUIDANCE
        if (t, "seed", g) not in done
    ]


def recommend(rows: list[dict], min_label_accuracy: float, command: str) -> SamplingDefaults | None:
    """The labelled row with the lowest FID among those the judge recognises often enough, as
    sampling defaults (labels from seeds); None when no row qualifies."""
    ok = [r for r in rows if r.get("labels") == "seed" and r.get("label_accuracy", 0) >= min_label_accuracy]
    if not ok:
        return None
    best = min(ok, key=lambda r: r["fid"])
    g = best["guidance"]
    return SamplingDefaults(
        temperature=best["temperature"],
        guidance=None if g is None else tuple(g),
        label="seed",
        chosen_by=f"{command}: the lowest digit FID ({best['fid']:.2f} at {best['samples']} samples) among "
        f"labelled settings with label accuracy >= {min_label_accuracy:.0%} ({best['label_accuracy']:.1%})",
    )


def ablation_settings(cond_temperature: float, conditional: bool) -> list[Setting]:
    settings = [Setting(f"null label, temperature {t}", t, "null", 0.0) for t in (0.6, 0.8, 1.0)]
    if conditional:
        settings += [
            Setting(
                f"labels from seeds, temperature {cond_temperature}, guidance {g}",
                cond_temperature,
                "seed",
                g,
            )
            for g in (0.0, 1.0, 2.0)
        ]
    return [*settings, Setting("the model's defaults")]


def draw_over_http(
    url: str, n: int, seed: int = 0, model: str | None = None, chunk: int = 50
) -> tuple[torch.Tensor, list[int | None]]:
    """n samples from a running service, asked with only n and seed (what the defaults give), and
    the label the service reports for each."""
    import httpx  # only this path needs it

    images, labels = [], []
    with httpx.Client(base_url=url, timeout=600) as client:
        for start in range(0, n, chunk):
            body = {"n": min(chunk, n - start), "seed": seed + start, **({"model": model} if model else {})}
            r = client.post("/sample", json=body)
            r.raise_for_status()
            for item in r.json()["data"]:
                png = Image.open(io.BytesIO(base64.b64decode(item["b64_json"])))
                arr = np.asarray(png, dtype=np.uint8)
                images.append(arr[..., None] if arr.ndim == 2 else arr)
                labels.append(item.get("label"))
    return torch.from_numpy(np.stack(images)), labels


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _row(name: str, setting: dict | None, score: dict, seconds: float, grid: Path | None) -> dict:
    return {
        "setting": name,
        **(setting or {}),
        **score,
        "seconds": round(seconds, 1),
        "grid": grid and str(grid),
    }


def run_table(
    vae: VDVAE, qj: QualityJudge, test: ImageSet, args: argparse.Namespace, out: Path | None
) -> list[dict]:
    """One row per setting (and the real test images, and the HTTP defaults with --url)."""
    rows = []
    real = torch.from_numpy(np.ascontiguousarray(test.images))
    rows.append(_row(f"real test images ({len(test)})", None, qj.score(real, test.labels), 0.0, None))
    draws = [(s.name, s.describe(vae), lambda s=s: draw(vae, s, args.samples)) for s in args.settings]
    if args.url:
        name = f"the defaults over HTTP ({{n, seed}} to {args.url})"
        draws.append((name, None, lambda: draw_over_http(args.url, args.samples, model=args.served_model)))
    for name, setting, sample in draws:
        started = time.monotonic()
        images, labels = sample()
        seconds = time.monotonic() - started
        grid = None
        if out is not None:
            grid = out / f"{_slug(name.split(' (')[0])}.png"
            save_png(image_grid(images[:100], ncols=10), grid)
        rows.append(_row(name, setting, qj.score(images, labels), seconds, grid))
        print(f"{name}: {json.dumps(rows[-1])}", file=sys.stderr, flush=True)
    return rows


def markdown(rows: list[dict], result: dict) -> str:
    """The table for a model card, after a line with the bits per dim and the sample count."""

    def cell(row: dict, key: str, fmt: str) -> str:
        return "-" if row.get(key) is None else format(row[key], fmt)

    bpd = f"held-out bits per dim {result['test_bits_per_dim']:.4f}"
    if "test_bits_per_dim_null_label" in result:
        bpd += f" (null label: {result['test_bits_per_dim_null_label']:.4f})"
    lines = [
        f"{bpd} over {result['test_images']} test images; {result['samples_per_setting']} samples per "
        f"setting, seeds from 0; judge {Path(result['judge']).name} "
        f"({result['judge_test_accuracy']:.1%} on test digits)",
        "",
        "| setting | digit FID | precision | recall | confident | label accuracy |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [cell(r, "fid", ".2f"), cell(r, "precision", ".3f"), cell(r, "recall", ".3f")]
        cells += [cell(r, "confident", ".1%"), cell(r, "label_accuracy", ".1%")]
        lines.append(f"| {r['setting']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m model.training.evaluation.ablation",
        description=__doc__.split("\n\n")[0],
        epilog=f"The judge is the bundled digit judge for --data mnist, else --judge. {INCEPTION_NOTE}.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("model", help="model folder")
    p.add_argument("--data", default="mnist", help="the model's data ('mnist', a folder, ...)")
    p.add_argument("--data-format", default="auto")
    p.add_argument("--test-data", default=None)
    p.add_argument("--judge", default=None, help="judge file (default for mnist: the bundled judge)")
    p.add_argument("-n", "--samples", type=int, default=1000, help="samples per setting (seeds 0..samples-1)")
    p.add_argument("--cond-temperature", type=float, default=1.0, help="temperature of the labelled rows")
    p.add_argument("--url", default=None, help="also draw the defaults from this running service")
    p.add_argument(
        "--model-name", dest="served_model", default=None, help="the served model to ask with --url"
    )
    p.add_argument("--out", default=None, help="folder for table.json, table.md and one grid per setting")
    p.add_argument("--device", default="cpu")
    p.add_argument("--limit", type=int, default=None, help="bits per dim over the first N test images only")
    p.add_argument("--tune", action="store_true", help="also try labelled settings and recommend defaults")
    p.add_argument("--min-label-accuracy", type=float, default=0.95, help="--tune's recognition floor")
    p.add_argument(
        "--write-defaults", action="store_true", help="write --tune's recommendation into config.json"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        vae = load_model(args.model, device=args.device)
        qj, about = load_quality_judge(args.judge, args.data, args.data_format, args.test_data)
        check_judge_fits(qj, vae)
        test = load_split(
            args.data, "test", vae.hp.image_size, vae.hp.image_channels, args.data_format, args.test_data
        )
    except (CheckpointError, DataError, JudgeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if (args.tune or args.write_defaults) and not vae.hp.conditional:
        print("error: --tune chooses labelled settings: it needs a class-conditional model", file=sys.stderr)
        return 2
    args.settings = ablation_settings(args.cond_temperature, vae.hp.conditional)
    if args.tune or args.write_defaults:
        args.settings += tune_settings(args.settings)
    out = Path(args.out) if args.out else None
    held_out = test.subset(np.arange(min(args.limit, len(test)))) if args.limit else test
    started = time.monotonic()
    bpd = {"test_bits_per_dim": round(evaluate_elbo(vae, held_out)["bits_per_dim"], 4)}
    if vae.hp.conditional:
        null = evaluate_elbo(vae, held_out, conditional=False)["bits_per_dim"]
        bpd["test_bits_per_dim_null_label"] = round(null, 4)
    bpd["test_images"] = len(held_out)
    rows = run_table(vae, qj, test, args, out)
    result = {
        "model": args.model,
        "sampling_defaults": vae.sampling.to_dict(),
        **bpd,
        **about,
        "samples_per_setting": args.samples,
        "seconds": round(time.monotonic() - started, 1),
        "rows": rows,
    }
    if args.tune or args.write_defaults:
        command = "python -m model.training.evaluation.ablation " + " ".join(
            sys.argv[1:] if argv is None else argv
        )
        chosen = recommend(rows, args.min_label_accuracy, command)
        result["recommended_defaults"] = chosen and chosen.to_dict()
        if args.write_defaults and chosen is not None:
            result["wrote"] = str(write_sampling_defaults(args.model, chosen))
    table = markdown(rows, result)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "table.json").write_text(json.dumps(result, indent=2) + "\n")
        (out / "table.md").write_text(table + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=2))
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
