"""The profile stage: PyTorch's profiler over a few calls of the fastest form (the sampling stage's) at
its best batch on the first preset. DIR/profile.txt holds the operators and kernels by their own
device time (CPU time on a CPU); the results keep the top ones and how much of the wall time the
device was busy, which says whether the host (launches, the noise draws) or the kernels bound it."""

from __future__ import annotations

import copy
import time
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from model.noise import set_draw_threads

from .command import Run
from .sampling import Form, forms, preset_model, release, sample_on_host

TABLE = "profile.txt"
CALLS = 3


def run(run: Run) -> dict[str, Any]:
    form: Form = run.shared.get("fastest") or forms(run.plan)[1]
    batch: int = run.shared.get("best_batch") or max(run.plan.batch_sizes)
    name = run.plan.presets[0]
    vae = form.apply(copy.deepcopy(preset_model(name, run.device)))
    on_cuda = run.device.type == "cuda"
    set_draw_threads(form.draw_threads)
    try:
        for _ in range(2):  # compile, capture, kernel choice: outside the profile
            sample_on_host(vae, batch)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])
        with profile(activities=activities) as prof:
            t0 = time.perf_counter()
            for _ in range(CALLS):
                sample_on_host(vae, batch)
            wall = time.perf_counter() - t0
    finally:
        set_draw_threads(1)
        del vae
        release(run.device)
    key = "self_device_time_total" if on_cuda else "self_cpu_time_total"
    events = sorted(prof.key_averages(), key=lambda e: getattr(e, key), reverse=True)
    table = prof.key_averages().table(sort_by=key, row_limit=40)
    heading = f"{name}, {form.name}, batch {batch}, {CALLS} calls in {wall:.3f} s on {run.device}\n"
    (run.out / TABLE).write_text(heading + table)
    print(heading + table, flush=True)
    total_us = sum(getattr(e, key) for e in events)
    top = [
        {"name": e.key, "calls": e.count, "ms": round(getattr(e, key) / 1000, 3),
         "share": round(getattr(e, key) / total_us, 4) if total_us else None}
        for e in events[:10]
    ]  # fmt: skip
    out = {
        "model": name,
        "form": form.name,
        "batch": batch,
        "calls": CALLS,
        "wall_s": round(wall, 4),
        "top": top,
    }
    if on_cuda:
        # The kernels' time over the wall time: near 1, the kernels bound the pass; far below, the host.
        kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        out["device_busy_share"] = round(sum(e.time_range.elapsed_us() for e in kernels) / 1e6 / wall, 4)
    return out
