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
from collections.abc import Callable, Iterable
from pathlib import Path


class ModelTimer:
    """vae.sample called directly, in the form the service serves it (optimize_for_inference) and at
    its torch thread count: the ceiling the service's images/s can reach at a given batch size."""

    def __init__(self, model_dir: Path, model: str, cpu_threads: int) -> None:
        import torch

        from model.checkpoint import load_model
        from model.inference import optimize_for_inference
        from service.engine import cpu_threads as service_threads

        self.threads = service_threads(cpu_threads)  # the same rule as the service
        torch.set_num_threads(self.threads)
        self.vae = optimize_for_inference(load_model(model_dir / model, device="cpu"))

    def images_per_s(self, batch_sizes: Iterable[int], seconds: float) -> dict[int, float]:
        """{batch size: img/s}; each size's CPU per image (this process, ms) in self.cpu_ms_per_image,
        to set beside the service's compute threads' CPU per image."""
        out = {}
        self.cpu_ms_per_image: dict[int, float] = {}
        for b in sorted(batch_sizes):
            self.vae.sample(b, seeds=list(range(b)))  # warm-up at this shape
            images, t0, cpu0 = 0, time.perf_counter(), time.process_time()
            while time.perf_counter() - t0 < seconds:
                self.vae.sample(b, seeds=[random.randrange(2**31) for _ in range(b)])
                images += b
            out[b] = images / (time.perf_counter() - t0)
            self.cpu_ms_per_image[b] = 1000 * (time.process_time() - cpu0) / images
        return out


def round_batches(runs: dict, round_index: int) -> set[int]:
    """Batch 1 and every run's rounded mean batch size in one round."""
    out = {1}
    for rounds in runs.values():
        for r in rounds[round_index]:
            if not math.isnan(r["mean_batch"]):
                out.add(max(1, round(r["mean_batch"])))
    return out


def compare_with_model(report: dict, args: argparse.Namespace) -> None:
    """Each run against vae.sample at the run's rounded mean batch, timed in the same round (so a
    shared machine's changing load hits both alike), twice: images per second, and images per CPU
    second (the server's threads against the model's process: the images/s ratio on a machine that
    gives both the same CPU). Also each batched server's gain over the last max_batch_size (1)
    against the model's own gain between batch 1 and that batch. Medians over rounds, then each
    round's figure."""
    per_cpu_s = [{b: 1000 / ms for b, ms in rnd.items()} for rnd in report["model_cpu_ms_per_image"]]
    for what, model, value in (
        ("img/s", report["model_throughput"], lambda run: run["ips"]),
        ("images per CPU second", per_cpu_s, _images_per_cpu_s),
    ):
        print(f"service against the model in-process, timed in the same rounds, in {what}:")
        _compare(report, args, model, value)


def _images_per_cpu_s(run: dict) -> float:
    server_s = run["loop_cpu_s_per_request"] + run["compute_cpu_s_per_request"]  # NaN when unknown
    return run["images"] / run["requests"] / server_s if run["requests"] else math.nan


def _compare(
    report: dict, args: argparse.Namespace, model: list[dict], value: Callable[[dict], float]
) -> None:
    base_label = f"max_batch_size={args.max_batch_sizes[-1]}" if args.spawn else None
    for label, rounds in report["runs"].items():
        base = report["runs"].get(base_label) if label != base_label else None
        for i, c in enumerate(args.concurrency):
            ratios, gains = [], []
            for r, rnd in enumerate(rounds):
                run = rnd[i]
                if math.isnan(run["mean_batch"]) or math.isnan(value(run)):
                    continue
                b = max(1, round(run["mean_batch"]))
                ratios.append(value(run) / model[r][b])
                if base is not None:
                    gains.append((value(run) / value(base[r][i])) / (model[r][b] / model[r][1]))
            if not ratios:
                continue
            batch = statistics.median([rnd[i]["mean_batch"] for rnd in rounds])
            line = f"  {label} concurrency {c} (mean batch {batch:.1f}): x{_summary(ratios)} of the model's"
            if gains:
                line += f"; its gain over {base_label}: x{_summary(gains)} of the model's gain"
            print(line)


def _summary(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} (rounds: {', '.join(f'{v:.2f}' for v in values)})"


def default_model(model_dir: Path) -> str:
    """The model a server of `model_dir` serves by default: the settings' default_model when that
    folder is there, else the first model folder."""
    from model.checkpoint import model_folders

    from .settings import Settings

    names = [p.name for p in model_folders(model_dir)]
    wanted = Settings.model_fields["default_model"].default
    return wanted if wanted in names else names[0]
