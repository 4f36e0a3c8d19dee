"""Training objectives: the official ELBO, and KL reweighting by an information schedule.

KL reweighting (Luhman & Luhman 2022; visual-vae `calc_weight_for_kl`): each latent layer i gets a
target share r_i of an image's total KL. A layer that uses less than its share pays less for its KL
(weight down to 0.1), one that uses more than twice its share pays up to double. Weights are
computed per image and per layer, then detached: gradients flow through the KL only.
"""

from __future__ import annotations

import math

import torch

from ..hparams import HParams
from ..vae import VDVAE


def information_schedule(
    num_layers: int, scale: float = 1000.0, shift: float = 10.0, total: float = 66.7
) -> torch.Tensor:
    """Target KL share of each layer in percent, top (first generated) layer first.

    "shifted_exp": raw_i = scale^(i / (N - 1)) + shift, renormalised to sum to `total` percent, so
    the high-resolution layers generated last get exponentially more of the budget.
    """
    i = torch.arange(num_layers, dtype=torch.float64)
    exponent = i / (num_layers - 1) if num_layers > 1 else torch.zeros(1, dtype=torch.float64)
    raw = scale**exponent + shift
    return (total * raw / raw.sum()).float()


def resolution_schedule(layer_resolutions: list[int], total: float = 66.7) -> torch.Tensor:
    """ "constant_per" (visual-vae's super-resolution recipe): each layer's target share in percent
    proportional to its resolution (a 32x32 layer gets twice a 16x16 one's), summing to `total`."""
    raw = torch.tensor(layer_resolutions, dtype=torch.float64)
    return (total * raw / raw.sum()).float()


def kl_schedule(kind: str, hp: HParams) -> torch.Tensor | None:
    """The target shares (percent, top layer first) of a KL_SCHEDULES name; None for the plain ELBO."""
    if kind == "none":
        return None
    if kind == "shifted_exp":
        return information_schedule(hp.num_layers)
    if kind == "constant_per":
        return resolution_schedule(hp.layer_resolutions)
    raise ValueError(f"unknown KL schedule {kind!r}; one of none, shifted_exp, constant_per")


def kl_weights(kl: torch.Tensor, share_percent: torch.Tensor, floor: float = 0.1) -> torch.Tensor:
    """Per-image, per-layer weights (n, L) for KL terms kl (n, L) in nats, detached.

    With T the image's total KL and r a layer's target share: weight x/a below a = r% of T, 1 up to
    2a, a linear ramp to 2 up to 3a, then 2; never below `floor`. Images with zero total KL get
    weight 1 (the 0/0 case that would otherwise turn the loss into NaN).
    """
    kl = kl.detach().float()
    total = kl.sum(dim=1, keepdim=True)  # (n, 1)
    a = 0.01 * share_percent.to(kl.device).view(1, -1) * total  # (n, L)
    safe_a = torch.where(a > 0, a, torch.ones_like(a))
    w = torch.where(
        kl < a,
        kl / safe_a,
        torch.where(kl < 2 * a, torch.ones_like(kl), torch.clamp(1.0 + (kl - 2 * a) / safe_a, max=2.0)),
    )
    w = torch.where(total > 0, w, torch.ones_like(w))
    return w.clamp(min=floor)


def drop_labels(labels: torch.Tensor, p: float) -> torch.Tensor:
    """Replace each label by the null label (-1) with probability p, for classifier-free guidance."""
    drop = torch.rand(labels.shape) < p
    return torch.where(drop, torch.full_like(labels, -1), labels)


def training_loss(
    vae: VDVAE | torch.nn.Module,
    x_in: torch.Tensor,
    x_target: torch.Tensor,
    labels: torch.Tensor | None,
    schedule: torch.Tensor | None,
    low_res: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The scalar loss (nats/dim, batch mean) and the per-example stats it came from.

    Without a schedule: the official negative ELBO (for the Gaussian head with its sigma_q
    distortion). With one: distortion + the reweighted KL. `stats["elbo"]` is always the unweighted
    bound on 8-bit data, which is what bits per dim report. A super-resolution model takes its
    uint8 `low_res` input; the model adds the conditioning-augmentation noise.
    """
    stats = vae(x_in, x_target, labels=labels, low_res=low_res)
    dims = math.prod(x_in.shape[1:])
    if schedule is None:
        rate = stats["rate"]
    else:
        rate = (kl_weights(stats["kl"], schedule) * stats["kl"]).sum(dim=1) / dims
    loss = (stats["recon_loss"] + rate).mean()
    return loss, stats
