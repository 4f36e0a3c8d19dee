"""The precision stage: bf16 and fp16 autocast against float32 on the bundled model and on the first
preset (random weights).

Per model and dtype: the ELBO in bits per dim of the bundled model's test digits (grey digits
repeated to three channels for an RGB model), against float32's (mean and largest difference per
image); samples from the same seeds, against float32's pixels; and whether sampling stays finite at
the extremes the API accepts (temperature, and each guidance weight on a class-conditional model).
DIR/precision.png shows the samples: one row per model and dtype (fp32, bf16, fp16), one column per
seed. On a CPU autocast is off (model.inference), so there every dtype computes float32.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

import torch

from model.bundled import bundled_weights
from model.checkpoint import load_model
from model.hierarchical import HierarchicalVAE
from model.imageio import image_grid, save_png
from model.inference import InferenceForm
from model.training.data import load_mnist
from service.settings import Settings

from .command import Run
from .sampling import BUNDLED, preset_model, release

DTYPES = ("none", "bf16", "fp16")  # autocast dtypes by model.inference's names; "none" is float32
PICTURE = "precision.png"
CHUNK = 64  # images per encode call


def run(run: Run) -> dict[str, Any]:
    digits = load_mnist("test")
    x = torch.from_numpy(digits.images[: run.plan.digits])
    labels = torch.from_numpy(digits.labels[: run.plan.digits])
    models = {
        BUNDLED: load_model(bundled_weights() / BUNDLED, device=run.device),
        run.plan.presets[0]: preset_model(run.plan.presets[0], run.device),
    }
    results, rows = {}, []
    for name, vae in models.items():
        images = x.repeat(1, 1, 1, vae.hp.image_channels)  # grey digits as RGB for an RGB model
        results[name], samples = compare(vae, images, labels if vae.hp.conditional else None, run.plan.images)
        rows += [s.repeat(1, 1, 1, 3 // s.shape[-1]) for s in samples]
        print(f"{name}: {results[name]}", flush=True)
        del vae
        release(run.device)
    save_png(image_grid(torch.cat(rows), ncols=run.plan.images), run.out / PICTURE)
    names = ["fp32" if d == "none" else d for d in DTYPES]
    results["picture"] = f"{PICTURE}: rows {', '.join(f'{m} {d}' for m in models for d in names)}"
    return results


def compare(
    base: HierarchicalVAE, x: torch.Tensor, labels: torch.Tensor | None, n_images: int
) -> tuple[dict[str, Any], list[torch.Tensor]]:
    """Each dtype's figures against float32's, and its samples (uint8, on the host)."""
    out: dict[str, Any] = {}
    ref_bpd = ref_images = None
    samples = []
    for dtype in DTYPES:
        vae = InferenceForm(amp=dtype).apply(copy.deepcopy(base))
        bpd = torch.cat([
            vae.encode(x[i : i + CHUNK], labels=None if labels is None else labels[i : i + CHUNK].tolist(),
                       seeds=list(range(i, i + len(x[i : i + CHUNK])))).bits_per_dim.double().cpu()
            for i in range(0, len(x), CHUNK)
        ])  # fmt: skip
        images = vae.sample(n_images, seeds=list(range(n_images))).cpu()
        samples.append(images)
        if ref_bpd is None or ref_images is None:
            ref_bpd, ref_images = bpd, images
        off = (images.int() - ref_images.int()).abs()
        out["fp32" if dtype == "none" else dtype] = {
            "bits_per_dim": round(bpd.mean().item(), 5),
            "bpd_mean_diff": round((bpd - ref_bpd).mean().item(), 6),
            "bpd_max_abs_diff": round((bpd - ref_bpd).abs().max().item(), 6),
            "nonfinite_bpd": int((~torch.isfinite(bpd)).sum()),
            "pixels_changed": round(off.gt(0).float().mean().item(), 5),
            "max_level_change": int(off.max()),
            "nonfinite_at_extremes": extremes(vae),
        }
        del vae
    return out, samples


def extremes(vae: HierarchicalVAE) -> dict[str, int]:
    """{setting: non-finite output parameters} of sampling at the extremes the service accepts: the
    least and the largest temperature, each with no guidance and (class-conditional models) with the
    largest guidance weight of the mean, of the variance, and of both; one image per setting, all
    in one pass (each image takes its own temperature and weights)."""
    limits = Settings.model_fields
    w = limits["max_guidance"].default
    temperatures = [limits["min_temperature"].default, limits["max_temperature"].default]
    weights = [(0.0, 0.0), (w, 0.0), (0.0, w), (w, w)] if vae.hp.conditional else [None]
    settings = list(itertools.product(temperatures, weights))
    n, L = len(settings), vae.hp.num_layers
    params = vae.sample_params(
        n,
        temperature=torch.tensor([[t] * L for t, _ in settings]),
        guidance=torch.tensor([g for _, g in settings]) if vae.hp.conditional else None,
        seeds=list(range(n)),
    )
    bad = (~torch.isfinite(params)).flatten(1).sum(dim=1).tolist()
    return {f"t={t:g}, guidance={g}": int(b) for (t, g), b in zip(settings, bad)}
