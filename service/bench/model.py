"""The model's own sampling throughput, in this process: `vdvae bench model`, and the in-process
ceiling that `vdvae bench service --model-throughput` sets beside the service.

    vdvae bench model --preset cifar10 --batch-sizes 1,4,16
    vdvae bench model --weights weights/mnist --batch-sizes 1,8,32 --device cpu
    vdvae bench model --weights weights/mnist --progressive   # sample_stages, previews included

"eager" is the model as loaded (float32, NCHW, no compilation); "optimized" is the same weights
after model.inference.optimize_for_inference (channels_last and bf16 autocast on CUDA, plus
torch.compile with --compile). The two are timed alternately, so drift in machine load hits both;
each figure is the median of --repeats timed calls after a warm-up call.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import statistics
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import torch

from model.checkpoint import load_model
from model.hparams import HParams
from model.inference import AMP_DTYPES, InferenceForm, optimize_for_inference, resolve_device
from model.presets import PRESETS
from model.vae import VDVAE

PROG = "vdvae bench model"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_sample(
    vae: VDVAE, n: int, guidance: float | None, temperature: float, progressive: bool = False
) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one sample call of n images (with `progressive`, of
    sample_stages run to its end: every resolution's preview, then the samples)."""
    labels = list(range(n)) if vae.hp.conditional else None
    if labels is not None:
        labels = [i % vae.hp.num_classes for i in labels]
    g = (guidance, guidance) if guidance is not None and vae.hp.conditional else None
    _sync(vae.device)
    wall, cpu = time.perf_counter(), time.process_time()
    call = (
        (lambda **kw: list(vae.sample_stages(n, **kw))) if progressive else (lambda **kw: vae.sample(n, **kw))
    )
    call(temperature=temperature, labels=labels, guidance=g, seeds=list(range(n)))
    _sync(vae.device)
    return time.perf_counter() - wall, time.process_time() - cpu


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.replace(PROG, prog),
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument(
        "--preset",
        default=None,
        choices=sorted(PRESETS),
        help="architecture of random weights, or of an official .th file (default: cifar10 / inferred)",
    )
    p.add_argument(
        "--weights", default=None, help="model folder or official .th file (default: random weights)"
    )
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--batch-sizes", default="1,4,16", help="comma-separated (default: 1,4,16)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per batch size and mode (default: 3)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--compile", action="store_true", help="torch.compile the optimized model's blocks")
    p.add_argument(
        "--amp", default="bf16", choices=sorted(AMP_DTYPES), help="CUDA autocast dtype (default: bf16)"
    )
    p.add_argument("--channels-last", choices=["on", "off"], default="on",
                   help="optimized model's memory format, on CPU and CUDA alike (default: on)")  # fmt: skip
    p.add_argument("--guidance", type=float, default=None, help="guidance weight (conditional models)")
    p.add_argument("--temperature", type=float, default=1.0, help="(default: 1.0)")
    p.add_argument("--progressive", action="store_true", help="time sample_stages (with its previews)")
    p.add_argument("--json", action="store_true", help="also print one JSON line per batch size")
    return p


def bench_batch(eager: VDVAE, fast: VDVAE, n: int, args: argparse.Namespace) -> dict[str, float]:
    """Median throughput of both forms at batch n, timed alternately after a warm-up call each."""
    timed = (args.guidance, args.temperature, args.progressive)
    for vae in (eager, fast):  # warm-up (and compilation) for this batch size
        time_sample(vae, n, *timed)
    runs: dict[str, list[tuple[float, float]]] = {"eager": [], "optimized": []}
    for _ in range(args.repeats):
        runs["eager"].append(time_sample(eager, n, *timed))
        runs["optimized"].append(time_sample(fast, n, *timed))
    wall = {k: statistics.median(w for w, _ in v) for k, v in runs.items()}
    cpu = statistics.median(c for _, c in runs["eager"])
    return {"batch": n, "eager_img_s": n / wall["eager"], "optimized_img_s": n / wall["optimized"],
            "speedup": wall["eager"] / wall["optimized"], "eager_cpu_s_per_img": cpu / n}  # fmt: skip


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    args = build_parser(prog).parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if args.weights:
        eager = load_model(args.weights, preset=args.preset, device=device)
    else:
        eager = VDVAE(HParams.preset(args.preset or "cifar10")).to(device).eval().requires_grad_(False)
    fast = optimize_for_inference(copy.deepcopy(eager), channels_last=args.channels_last == "on",
                                  amp=args.amp, compile=args.compile)  # fmt: skip
    name = args.weights or f"{args.preset or 'cifar10'} (random weights)"
    dev_name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU, {torch.get_num_threads()} threads"
    )
    what = "sample_stages (previews included)" if args.progressive else "sample"
    print(f"model: {name}; device: {dev_name}; torch {torch.__version__}; timing {what}")
    print(f"optimized = channels_last {fast.decoder.gain.is_contiguous(memory_format=torch.channels_last)}, "
          f"amp {fast.amp_dtype}, compile {args.compile}")  # fmt: skip
    print(f"{'batch':>5} {'eager img/s':>12} {'optimized img/s':>16} {'speedup':>8} {'eager cpu-s/img':>16}")
    for n in (int(b) for b in args.batch_sizes.split(",")):
        row = bench_batch(eager, fast, n, args)
        print(f"{n:>5} {row['eager_img_s']:>12.2f} {row['optimized_img_s']:>16.2f} {row['speedup']:>7.2f}x "
              f"{row['eager_cpu_s_per_img']:>16.3f}")  # fmt: skip
        if args.json:
            print(json.dumps(row))
    return 0


class ModelTimer:
    """vae.sample called directly, in the form the service serves it (optimize_for_inference, or the
    given form) on its device and at its torch thread count: the ceiling the service's images/s can
    reach at a given batch size."""

    def __init__(
        self, folder: Path, threads: int, device: str = "cpu", form: InferenceForm | None = None
    ) -> None:
        self.threads = threads
        torch.set_num_threads(threads)
        self.vae = (form or InferenceForm()).apply(load_model(folder, device=device))
        self.cpu_ms_per_image: dict[int, float] = {}

    def images_per_s(self, batch_sizes: Iterable[int], seconds: float) -> dict[int, float]:
        """{batch size: img/s}, each size sampled for `seconds` with fresh seeds after a warm-up call;
        its CPU per image (this process, ms) in self.cpu_ms_per_image, to set beside the service's
        compute threads' CPU per image."""
        out = {}
        self.cpu_ms_per_image = {}
        for b in sorted(batch_sizes):
            self.vae.sample(b, seeds=list(range(b))).cpu()  # warm-up at this shape
            images, t0, cpu0 = 0, time.perf_counter(), time.process_time()
            while time.perf_counter() - t0 < seconds:
                # On the host, as the service's images: on a GPU that also waits for the pass.
                self.vae.sample(b, seeds=[random.randrange(2**31) for _ in range(b)]).cpu()
                images += b
            out[b] = images / (time.perf_counter() - t0)
            self.cpu_ms_per_image[b] = 1000 * (time.process_time() - cpu0) / images
        return out


if __name__ == "__main__":
    sys.exit(main())
