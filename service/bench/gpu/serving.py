"""The service stage: `python -m service` on the run's device serving the bundled model, once batched
(max_batch_size of the plan) and once with max_batch_size=1, each driven by closed-loop clients of
one image (vdvae bench service's load generator); beside them the model's own images/s in this
process at each run's mean batch, in the form the service serves. Per run: images/s, latency
percentiles, mean batch, the event loop's CPU per request; per server: the time from its start to
ready."""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from model.bundled import bundled_weights
from model.inference import InferenceForm

from ..loadgen import spawned_server
from ..model import ModelTimer
from ..service import closed_loop, run_async
from .command import Run
from .sampling import BUNDLED, release

KEPT = (
    "concurrency",
    "requests",
    "errors",
    "ips",
    "p50_ms",
    "p99_ms",
    "mean_batch",
    "loop_cpu_s_per_request",
)


def run(run: Run) -> dict[str, Any]:
    from service.batching.engine import cpu_threads  # the service's rule for its torch threads
    from service.settings import settings_from_cli

    plan, model_dir = run.plan, bundled_weights()
    flags = ["--model-dir", str(model_dir), "--default-model", BUNDLED, "--device", plan.device,
             "--amp", plan.service_amp, *plan.server_flags]  # fmt: skip
    servers: dict[str, dict[str, Any]] = {}
    for size in (plan.service_batch, 1):
        label = f"max_batch_size={size}"
        t0 = time.monotonic()
        ready_s = min(180.0, max(30.0, run.left()))
        with spawned_server([*flags, "--max-batch-size", str(size)], ready_timeout_s=ready_s) as (url, pid):
            servers[label] = {"startup_s": round(time.monotonic() - t0, 2), "runs": []}
            for c in plan.concurrency:
                payload = {"n": 1, "model": BUNDLED}
                result = run_async(
                    closed_loop(url, c, plan.duration_s, plan.warmup_s, payload, server_pid=pid)
                )
                row = {k: v for k, v in result.summary().items() if k in KEPT}
                servers[label]["runs"].append(row)
                print(f"  {label} {c:>4} clients: {row['ips']:.1f} img/s, p50 {row['p50_ms']:.1f} ms, "
                      f"mean batch {row['mean_batch']:.1f}, loop {1000 * row['loop_cpu_s_per_request']:.3f} "
                      f"ms CPU/request", flush=True)  # fmt: skip
    settings = settings_from_cli(flags)
    threads = cpu_threads(settings.cpu_threads) if run.device.type == "cpu" else torch.get_num_threads()
    before = torch.get_num_threads()
    batches = {1} | {
        max(1, round(r["mean_batch"]))
        for s in servers.values()
        for r in s["runs"]
        if not math.isnan(r["mean_batch"])
    }
    try:
        timer = ModelTimer(model_dir / BUNDLED, threads, plan.device, InferenceForm(amp=plan.service_amp))
        model = timer.images_per_s(batches, plan.duration_s)
    finally:
        torch.set_num_threads(before)
        release(run.device)
    print(f"  the model in this process: {', '.join(f'batch {b} {v:.1f} img/s' for b, v in model.items())}")
    for s in servers.values():
        for r in s["runs"]:
            if not math.isnan(r["mean_batch"]) and r["ips"]:
                batch = max(1, round(r["mean_batch"]))
                r["model_img_s"] = round(model[batch], 2)
                r["of_model"] = round(r["ips"] / model[batch], 3)
    return {"servers": servers, "model_img_s": model, "form": f"amp {plan.service_amp}", "flags": flags}
