"""Sampling throughput of a visual-vae model here against visual-vae's own PyTorch code on the same
weights, batch size and threads.

    vdvae bench visual-vae --checkout ../visual-vae --preset cifar10 --batch-sizes 1,8,32
    vdvae bench visual-vae --checkout ../visual-vae --preset imagenet32 --batch-sizes 8 \\
        --weights i32_ema_weights.pt

Their model comes from a checkout of tcl9876/visual-vae (model.tools.visual_vae_reference); without
--weights both run the same random weights in their initialisation. Theirs samples with its
`VAE.p_sample` (guidance weights as given; the raw mean it returns), ours with `sample` in the form
the service runs (model.inference.optimize_for_inference; uint8 images from per-image seeds). The
two are timed alternately so that drift in the machine's load hits both; each figure is the median
of --rounds timed calls after a warm-up call of each (wall time, and the process's CPU time, which a
busy machine disturbs less). Prints one JSON line per model and batch size, then the ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from model.checkpoint import read_official_state_dict
from model.inference import optimize_for_inference, resolve_device
from model.tools.visual_vae_reference import load_reference
from model.visual_vae import VISUAL_VAE_PRESETS, VisualVAE, VisualVAEConfig


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(call: Callable[[], object], device: torch.device) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    _sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    _sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def their_model_fields(cfg: VisualVAEConfig) -> dict:
    """Our configuration as their VAE's keyword arguments."""
    d = cfg.to_dict()
    fields = ("resolution", "c", "c_enc", "c_mult", "num_classes", "nlayers", "enc_nlayers",
              "num_attention", "num_final_blocks", "is_superres", "superres_nlayers", "zdim")  # fmt: skip
    return {k: d[k] for k in fields}


def build_pair(
    checkout: Path, cfg: VisualVAEConfig, weights: Path | None, device: torch.device
) -> tuple[torch.nn.Module, VisualVAE]:
    """(their VAE, ours) with the same weights on `device`, both float32 as built."""
    theirs = load_reference(checkout).VAE(**their_model_fields(cfg))
    if weights is not None:
        theirs.load_state_dict(read_official_state_dict(weights), strict=True)
    ours = VisualVAE(cfg)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return theirs.to(device).eval().requires_grad_(False), ours.to(device).eval().requires_grad_(False)


def run(args: argparse.Namespace) -> list[dict]:
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cfg = (
        VisualVAEConfig.preset(args.preset)
        if args.config is None
        else VisualVAEConfig.from_config(json.loads(Path(args.config).read_text()))
    )
    torch.manual_seed(0)
    theirs, ours = build_pair(Path(args.checkout), cfg, args.weights and Path(args.weights), device)
    optimize_for_inference(ours, amp="none", compile=args.compile)
    return [row for n in args.batch_sizes for row in run_batch(args, cfg, theirs, ours, device, n)]


def run_batch(
    args: argparse.Namespace,
    cfg: VisualVAEConfig,
    theirs: torch.nn.Module,
    ours: VisualVAE,
    device: torch.device,
    n: int,
) -> list[dict]:
    """Both models at batch size n, timed alternately: one row each."""
    guidance = (args.mean_scale, args.var_scale) if cfg.conditional else (0.0, 0.0)
    calls = sample_calls(cfg, theirs, ours, device, n, guidance)
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in calls}
    for call in calls.values():
        call()  # warm-up: allocator, kernels
    for _ in range(args.rounds):
        for name, call in calls.items():
            times[name].append(timed(call, device))
    rows = []
    for name, pairs in times.items():
        ts = [w for w, _ in pairs]
        median = statistics.median(ts)
        cpu = statistics.median(c for _, c in pairs)
        rows.append({
            "code": name, "model": args.config or args.preset, "device": str(device), "threads": args.threads,
            "compiled": args.compile and name == "ours", "batch": n,
            "guidance": list(guidance), "median_s": round(median, 4), "img_per_s": round(n / median, 3),
            "rounds_s": [round(t, 4) for t in ts], "cpu_s_per_img": round(cpu / n, 4),
        })  # fmt: skip
    return rows


def sample_calls(
    cfg: VisualVAEConfig,
    theirs: torch.nn.Module,
    ours: VisualVAE,
    device: torch.device,
    n: int,
    guidance: tuple[float, float],
) -> dict[str, Callable[[], object]]:
    """{"theirs": ..., "ours": ...}: one call of each sampling n images (the guidance weights on a
    class-conditional model; a super-resolution model upscales black images)."""
    labels = torch.arange(n, device=device) % cfg.num_classes if cfg.conditional else None
    low = torch.zeros(n, cfg.low_res, cfg.low_res, 3, device=device) if cfg.is_superres else None

    def call_theirs() -> object:
        img_lr = low.permute(0, 3, 1, 2).clone() if low is not None else None  # they add noise in place
        with torch.no_grad():
            return theirs.p_sample(
                num=n, label=labels, img_lr=img_lr, mweight=guidance[0], vweight=guidance[1]
            )

    def call_ours() -> object:
        return ours.sample(
            n,
            temperature=1.0,
            labels=labels.tolist() if labels is not None else None,
            guidance=guidance if cfg.conditional else None,
            seeds=list(range(n)),
            low_res=low,
        )

    return {"theirs": call_theirs, "ours": call_ours}


def build_parser(prog: str = "vdvae bench visual-vae") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description=__doc__.replace("vdvae bench visual-vae", prog),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkout", required=True, help="a checkout of tcl9876/visual-vae")
    p.add_argument("--preset", choices=sorted(VISUAL_VAE_PRESETS), default="cifar10")
    p.add_argument("--config", help="their config as JSON, instead of a preset")
    p.add_argument("--weights", help="their *_ema_weights.pt (default: random weights)")
    p.add_argument(
        "--batch-sizes", type=lambda s: [int(b) for b in s.split(",")], default=[1, 8], help="e.g. 1,8,32"
    )
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--mean-scale", type=float, default=2.0, help="guidance of class-conditional models")
    p.add_argument("--var-scale", type=float, default=4.0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--compile", action="store_true", help="ours with torch.compile (optimize_for_inference)")
    return p


def main(argv: list[str] | None = None, prog: str = "vdvae bench visual-vae") -> int:
    args = build_parser(prog).parse_args(argv)
    rows = run(args)
    for row in rows:
        print(json.dumps(row))
    for n in sorted({r["batch"] for r in rows}):
        by = {r["code"]: r for r in rows if r["batch"] == n}
        wall = by["ours"]["img_per_s"] / by["theirs"]["img_per_s"]
        cpu = by["theirs"]["cpu_s_per_img"] / by["ours"]["cpu_s_per_img"]
        print(f"batch {n}: ours / theirs x{wall:.2f} img/s, x{cpu:.2f} images per CPU second")
    return 0


if __name__ == "__main__":
    sys.exit(main())
