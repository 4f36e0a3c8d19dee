"""The sampling stage: images/s and batch-1 latency of each model at each batch size, ours in fp32
and in each fast form, the reference implementations' own code in fp32 on the same weights, and
the share of the arithmetic floor (the environment stage's measured matrix rate over the model's
FLOPs per sample).

Models, in order: the first preset (the targets' model; every form is measured on it, and the
fastest form at its best batch is what the other models and the profile stage run), the bundled
model, the other presets, a visual-vae model. Each call's images end on the host, as the service's
do. Each configuration is a warm-up call (its time is the compile's, for a compiled form) and up to
`repeats` timed calls; the figure is their median.
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from model.bundled import bundled_weights
from model.checkpoint import load_model
from model.graphs import SampleGraphs
from model.hierarchical import HierarchicalVAE
from model.hparams import HParams
from model.inference import InferenceForm
from model.noise import set_draw_threads
from model.tools.vdvae_reference import official_model
from model.vae import VDVAE
from model.visual_vae import VisualVAE

from ..visual_vae import build_pair, sample_calls, timed
from .command import Plan, Run

BUNDLED = "mnist"  # the bundled model folder under weights/
RESERVE_S = 30.0  # left for the profile stage, which runs the fastest form found here


@dataclasses.dataclass(frozen=True)
class Form:
    """One way of running our model: model.inference's settings (None: as loaded, float32, NCHW,
    eager) and the host threads that draw the images' noise."""

    name: str
    inference: InferenceForm | None
    draw_threads: int = 1

    def apply(self, vae: HierarchicalVAE) -> HierarchicalVAE:
        if self.inference is None:
            return vae
        self.inference.apply(vae)
        if self.inference.cuda_graphs and vae.device.type == "cpu":
            # The same padded passes, without capture: on the CPU the path runs, and nothing is gained.
            vae.graphs = SampleGraphs(vae, self.inference.buckets, capture=False)
        return vae

    @property
    def compiled(self) -> bool:
        return self.inference is not None and self.inference.compile


def forms(plan: Plan) -> list[Form]:
    threads = os.cpu_count() or 1
    graphs = {"cuda_graphs": True, "buckets": plan.batch_sizes}
    out = [
        Form("fp32", None),
        Form("bf16", InferenceForm(amp="bf16"), threads),
        Form("bf16+graphs", InferenceForm(amp="bf16", **graphs), threads),
    ]
    if plan.compile:
        out += [
            Form("bf16+compile", InferenceForm(amp="bf16", compile=True), threads),
            Form("bf16+compile+graphs", InferenceForm(amp="bf16", compile=True, **graphs), threads),
        ]
    return out


def run(run: Run) -> dict[str, Any]:
    plan, device = run.plan, run.device
    rows: list[dict] = []
    models: dict[str, dict] = {}
    all_forms = forms(plan)
    target = plan.presets[0]
    torch.manual_seed(0)
    vae = VDVAE(HParams.preset(target)).to(device).eval().requires_grad_(False)
    models[target] = measure_vdvae(run, target, vae, all_forms, rows)
    fastest, best = fastest_form(rows, target, all_forms)
    run.shared.update(fastest=fastest, best_batch=best)
    print(f"fastest form on {target}: {fastest.name} at batch {best}", flush=True)
    # The other models run fp32 and the fastest form (its uncompiled twin: compiling another model
    # costs minutes this run does not have).
    others = [all_forms[0], fastest if not fastest.compiled else uncompiled(fastest, all_forms)]
    others_vdvae: list[tuple[str, Callable[[], HierarchicalVAE]]] = [
        (BUNDLED, lambda: load_model(bundled_weights() / BUNDLED, device=device))
    ]
    others_vdvae += [(p, lambda p=p: preset_model(p, device)) for p in plan.presets[1:]]
    for name, build in others_vdvae:
        if run.left() < RESERVE_S + 10:
            models[name] = {"status": "skipped", "note": "out of time"}
            continue
        models[name] = measure_vdvae(run, name, build(), others, rows)
    name = f"visual-vae {plan.visual_vae.dataset}"
    models[name] = (
        measure_visual_vae(run, name, others, rows) if run.left() >= RESERVE_S + 10 else {"status": "skipped"}
    )
    return {"models": models, "rows": rows, "fastest": fastest.name, "best_batch": best}


def preset_model(preset: str, device: torch.device) -> VDVAE:
    torch.manual_seed(0)
    return VDVAE(HParams.preset(preset)).to(device).eval().requires_grad_(False)


def uncompiled(form: Form, candidates: list[Form]) -> Form:
    assert form.inference is not None
    twin = dataclasses.replace(form.inference, compile=False)
    return next(f for f in candidates if f.inference == twin)


def measure_vdvae(run: Run, name: str, vae: HierarchicalVAE, forms: list[Form], rows: list[dict]) -> dict:
    """One VDVAE model: its FLOPs, its noise draws, ours in each form, openai/vdvae's code in fp32
    (an official architecture, given a checkout)."""
    info = describe(run, vae)
    rows += sweep_forms(run, name, vae, forms, info)
    if run.official is None:
        info["official"] = "not measured: no --official checkout"
    elif vae.hp.conditional or vae.hp.image_channels != 3:
        info["official"] = "not measured: openai/vdvae builds unconditional RGB models only"
    else:
        theirs = official_model(run.official, vae.hp)
        theirs.load_state_dict(vae.state_dict(), strict=True)
        theirs = theirs.to(run.device).eval().requires_grad_(False)
        rows += sweep(run, name, "openai/vdvae", "fp32", info, lambda b: official_sample(theirs, b))
        del theirs
        release(run.device)
    return info


def measure_visual_vae(run: Run, name: str, forms: list[Form], rows: list[dict]) -> dict:
    """A visual-vae model of the plan's configuration: ours in each form, theirs in fp32 on the same
    weights (given a checkout)."""
    cfg, device = run.plan.visual_vae, run.device
    torch.manual_seed(0)
    if run.visual_vae is not None:
        theirs, ours = build_pair(run.visual_vae, cfg, None, device)
    else:
        theirs, ours = None, VisualVAE(cfg).to(device).eval().requires_grad_(False)
    info = describe(run, ours)
    rows += sweep_forms(run, name, ours, forms, info)
    if theirs is None:
        info["theirs"] = "not measured: no --visual-vae checkout"
    else:
        call = lambda b: sample_calls(cfg, theirs, ours, device, b, (0.0, 0.0))["theirs"]()  # noqa: E731
        rows += sweep(run, name, "visual-vae", "fp32", info, lambda b: on_host(call(b)))
    return info


def sweep_forms(run: Run, name: str, vae: HierarchicalVAE, forms: list[Form], info: dict) -> list[dict]:
    """Our model in each form (a copy of `vae` each), every batch size; in `info`, how each form's
    images of the same seeds differ from the first form's (fp32): a fast form must draw the same
    images, up to its rounding."""
    rows: list[dict] = []
    n = run.plan.batch_sizes[min(1, len(run.plan.batch_sizes) - 1)]
    reference = None
    info["pixels_against_fp32"] = changes = {}
    for form in forms:
        fast = form.apply(copy.deepcopy(vae))
        set_draw_threads(form.draw_threads)
        try:
            rows += sweep(run, name, "ours", form.name, info, lambda b, m=fast: sample_on_host(m, b))
            if rows[-1].get("status", "").startswith("failed"):
                continue
            images = sample_on_host(fast, n)
            reference = images if reference is None else reference
            off = (images.int() - reference.int()).abs()
            changes[form.name] = {"changed": round(off.gt(0).float().mean().item(), 5), "max": int(off.max())}
        except Exception as e:  # as in sweep: this form's failure alone
            traceback.print_exc(file=sys.stdout)
            changes[form.name] = {"failed": f"{type(e).__name__}: {e}"[:300]}
        finally:
            set_draw_threads(1)
            del fast
            release(run.device)
    return rows


def describe(run: Run, vae: HierarchicalVAE) -> dict[str, Any]:
    """The model's parameters, FLOPs per sample (a batch-1 pass under torch's FLOP counter: matrix
    products and convolutions), its floor in images/s at the measured matrix rate, and the host time
    of its noise draws per image on one thread and on all."""
    with FlopCounterMode(display=False) as counter:
        vae.sample(1, seeds=[0])
    flops = counter.get_total_flops()
    rate = run.shared.get("matrix_flops")
    n = min(64, max(run.plan.batch_sizes))
    draws = {}
    for threads in sorted({1, os.cpu_count() or 1}):
        set_draw_threads(threads)
        t0 = time.perf_counter()
        vae.draws(list(range(n)))
        if run.device.type == "cuda":
            torch.cuda.synchronize(run.device)
        draws[str(threads)] = round(1000 * (time.perf_counter() - t0) / n, 3)
    set_draw_threads(1)
    info = {
        "params": sum(p.numel() for p in vae.parameters()),
        "gflop_per_sample": round(flops / 1e9, 3),
        "floor_img_s": round(rate / flops, 1) if rate else None,
        "draw_ms_per_image_by_threads": draws,
    }
    print(f"{info}", flush=True)
    return info


def sweep(
    run: Run, model: str, code: str, form: str, info: dict, call: Callable[[int], object]
) -> list[dict]:
    """One row per batch size: images/s and latency, or why it was not measured (out of memory, a
    smaller batch already too slow for the time left, no time)."""
    plan, rows, stop = run.plan, [], None
    for b in plan.batch_sizes:
        row: dict[str, Any] = {"model": model, "code": code, "form": form, "batch": b}
        rows.append(row)
        if stop or run.left() < RESERVE_S:
            row["status"] = stop or "out of time"
            continue
        try:
            t = time_calls(lambda b=b: call(b), run.device, plan)
        except torch.cuda.OutOfMemoryError:
            release(run.device)
            row["status"] = stop = f"out of memory at batch {b}"
            continue
        except Exception as e:  # this form's failure; the other forms and models still run
            traceback.print_exc(file=sys.stdout)
            release(run.device)
            row["status"] = stop = f"failed at batch {b}: {type(e).__name__}: {e}"[:300]
            continue
        row.update(t, img_s=round(b / t["median_s"], 2), latency_ms=round(1000 * t["median_s"], 3))
        if info.get("floor_img_s"):
            row["floor_share"] = round(row["img_s"] / info["floor_img_s"], 4)
        if t["median_s"] > plan.max_call_s:
            stop = f"a call at batch {b} took {t['median_s']:.1f} s"
        print(f"  {model:>16} {code:>12} {form:>20} batch {b:>4}: {row['img_s']:>10.1f} img/s, "
              f"{row['latency_ms']:>9.2f} ms/call (warm-up {t['warmup_s']:.1f} s)", flush=True)  # fmt: skip
    return rows


def time_calls(call: Callable[[], object], device: torch.device, plan: Plan) -> dict[str, Any]:
    """A warm-up call, then up to plan.repeats timed ones (fewer once plan.max_config_s has passed)."""
    warmup = timed(call, device)[0]
    times: list[float] = []
    t0 = time.perf_counter()
    while len(times) < plan.repeats and (not times or time.perf_counter() - t0 < plan.max_config_s):
        times.append(timed(call, device)[0])
    return {"median_s": statistics.median(times), "calls": len(times), "warmup_s": round(warmup, 3)}


def fastest_form(rows: list[dict], model: str, forms: list[Form]) -> tuple[Form, int]:
    """The form other than fp32 with the most images/s on `model`, and that batch size."""
    measured = [r for r in rows if r["model"] == model and r["code"] == "ours" and "img_s" in r]
    fast = [r for r in measured if r["form"] != "fp32"] or measured
    if not fast:
        return forms[1], 1
    best = max(fast, key=lambda r: r["img_s"])
    return next(f for f in forms if f.name == best["form"]), best["batch"]


def on_host(x: object) -> object:
    return x.cpu() if isinstance(x, torch.Tensor) else x


def sample_on_host(vae: HierarchicalVAE, n: int) -> object:
    return on_host(vae.sample(n, seeds=list(range(n))))


def official_sample(theirs: torch.nn.Module, n: int) -> object:
    with torch.no_grad():
        return theirs.forward_uncond_samples(n, t=None)  # uint8 images on the host


def release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
