"""The model's own throughput (vae.sample in this process, in the form and at the thread count the
service serves it) beside the service's: the ceiling the service's batching can reach, and the gain
over batch 1 it can keep.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import time
from collections.abc import Sequence
from pathlib import Path


def model_throughput(
    model_dir: Path, model: str, batch_sizes: Sequence[int], seconds: float, cpu_threads: int
) -> dict[int, float]:
    """Images/s of vae.sample called directly, per batch size (the ceiling the service can reach)."""
    import torch

    from model.checkpoint import load_model
    from model.inference import optimize_for_inference
    from service.engine import cpu_threads as service_threads

    torch.set_num_threads(service_threads(cpu_threads))  # the same rule as the service
    vae = optimize_for_inference(load_model(model_dir / model, device="cpu"))  # the form the service serves
    out = {}
    for b in batch_sizes:
        vae.sample(b, seeds=list(range(b)))  # warm-up at this shape
        images, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            vae.sample(b, seeds=[random.randrange(2**31) for _ in range(b)])
            images += b
        out[b] = images / (time.perf_counter() - t0)
    return out


def _median(rounds: list[list[dict]], i: int, key: str) -> float:
    values = [rnd[i][key] for rnd in rounds if not math.isnan(rnd[i][key])]
    return statistics.median(values) if values else math.nan


def compare_with_model(report: dict, args: argparse.Namespace, tput: dict[int, float]) -> None:
    """Each run's images/s against vae.sample's at the run's (rounded, median) mean batch, and each
    batched server's gain over the last max_batch_size (1) against the model's own gain between
    batch 1 and that batch."""
    print("service against the model in-process (medians over rounds):")
    base_label = f"max_batch_size={args.max_batch_sizes[-1]}" if args.spawn else None
    for label, rounds in report["runs"].items():
        for i, c in enumerate(args.concurrency):
            ips, batch = _median(rounds, i, "ips"), _median(rounds, i, "mean_batch")
            if math.isnan(batch):
                continue
            b = max(1, round(batch))
            line = (
                f"  {label} concurrency {c}: {ips:.1f} img/s at mean batch {batch:.2f}; model at batch {b}: "
                f"{tput[b]:.1f} img/s: x{ips / tput[b]:.2f} of the model"
            )
            base = report["runs"].get(base_label) if base_label and label != base_label else None
            if base is not None and 1 in tput:
                gain, model_gain = ips / _median(base, i, "ips"), tput[b] / tput[1]
                line += f"; gain over {base_label} x{gain:.2f}, the model's x{model_gain:.2f}"
                line += f": {gain / model_gain:.2f} of it"
            print(line)


def default_model(model_dir: Path) -> str:
    names = sorted(p.name for p in model_dir.iterdir() if (p / "config.json").is_file())
    return "mnist" if "mnist" in names else names[0]


def observed_batches(report: dict) -> set[int]:
    """Every run's rounded median mean batch size."""
    out = set()
    for rounds in report["runs"].values():
        for i in range(len(rounds[0])):
            batch = _median(rounds, i, "mean_batch")
            if not math.isnan(batch):
                out.add(max(1, round(batch)))
    return out
