"""Per-image options of the user-level calls, checked and turned into what the decoder takes.

Each option may be one value for the whole batch or one per image, so that requests with different
labels, temperatures, guidance weights and given latents share one top-down pass. A bad value
raises ValueError naming the option and what would be accepted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .config import ModelConfig
from .guidance import Guidance
from .hparams import HParams

# A temperature: one float for every layer, one float per latent layer, or an (n, L) tensor.
TemperatureSpec = float | Sequence[float] | torch.Tensor
# Guidance weights: (w_mean, w_var) for every image (one float: both), or an (n, 2) tensor.
GuidanceSpec = float | tuple[float, float] | torch.Tensor | None
# Class labels: one for every image or one per image; None or -1 is the null label.
LabelSpec = int | Sequence[int | None] | torch.Tensor | None
# A super-resolution model's low-resolution input: uint8 (n, low_res, low_res, C), or None.
LowRes = torch.Tensor | None
# Std of the noise on a super-resolution model's low-res input: one for all, or one per image.
NoiseLevelSpec = float | Sequence[float] | torch.Tensor | None


def label_rows(hp: ModelConfig, labels: LabelSpec, n: int, device: torch.device) -> torch.Tensor | None:
    """Labels -> (n,) embedding rows on the device (the null label is row num_classes); None for an
    unconditional model."""
    if not hp.conditional:
        if labels is not None:
            raise ValueError("this model is unconditional: it takes no class labels")
        return None
    if labels is None:
        t = torch.full((n,), hp.num_classes, dtype=torch.long)
    else:
        if isinstance(labels, (list, tuple)):
            labels = [-1 if y is None else y for y in labels]
        t = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
        if t.numel() == 1 and n != 1:
            t = t.expand(n)
        if t.numel() != n:
            raise ValueError(f"got {t.numel()} labels for {n} images")
        bad = (t < -1) | (t >= hp.num_classes)
        if bad.any():
            raise ValueError(
                f"label {int(t[bad][0])} out of range: classes are 0..{hp.num_classes - 1} "
                "(-1 or None for unconditional)"
            )
        t = torch.where(t < 0, torch.full_like(t, hp.num_classes), t)
    return t.to(device)


def log_temperature(
    temperature: TemperatureSpec | None, n: int, num_layers: int, device: torch.device
) -> torch.Tensor | None:
    """A temperature -> (n, L) log-temperatures on the device, or None for exactly 1."""
    L = num_layers
    if temperature is None:
        return None
    if isinstance(temperature, (int, float)) and not isinstance(temperature, bool):
        if temperature == 1.0:
            return None  # exactly the untempered prior
        t = torch.full((n, L), float(temperature))
    else:
        t = torch.as_tensor(temperature, dtype=torch.float32)
        if t.dim() == 0:
            t = t.expand(n, L)
        elif t.dim() == 1:
            if t.numel() != L:
                raise ValueError(f"temperature has {t.numel()} values but the model has {L} latent layers")
            t = t.expand(n, L)
        elif tuple(t.shape) != (n, L):
            raise ValueError(f"per-image temperature must have shape ({n}, {L}), got {tuple(t.shape)}")
    if not torch.isfinite(t).all() or (t < 0).any():
        raise ValueError("temperature must be finite and >= 0")
    return torch.log(t.float()).to(device)


def guidance_rows(
    hp: ModelConfig,
    guidance: GuidanceSpec,
    labels: torch.Tensor | None,
    n: int,
    embed: Callable[[torch.Tensor], torch.Tensor],
) -> Guidance | None:
    """The guided images of a batch and their weights; 0 is plain conditional sampling.

    Only images with a real label and a non-zero weight need the unconditional stream, so only
    they are listed. `embed` maps null labels to their embeddings on the model's device.
    """
    if guidance is None:
        return None
    if not hp.conditional:
        raise ValueError("guidance needs a class-conditional model")
    w = torch.as_tensor(guidance, dtype=torch.float32)
    if w.dim() == 0:
        w = w.repeat(2)
    w = w.expand(n, 2) if w.dim() == 1 and w.numel() == 2 else w
    if tuple(w.shape) != (n, 2):
        raise ValueError(f"guidance must be (w_mean, w_var) or shape ({n}, 2), got {tuple(w.shape)}")
    if not torch.isfinite(w).all():
        raise ValueError("guidance weights must be finite")
    active = ((w != 0).any(dim=1) & (labels.cpu() != hp.num_classes)).nonzero().view(-1)  # (g,)
    if active.numel() == 0:
        return None
    device = labels.device
    rows = active.to(device)
    null = torch.full((rows.numel(),), hp.num_classes, dtype=torch.long, device=device)
    return Guidance(
        rows=rows,
        w_mean=w[active, 0].view(-1, 1, 1, 1).to(device),
        w_var=w[active, 1].view(-1, 1, 1, 1).to(device),
        null_cond=embed(null),
    )


def checked_latents(
    latents: Sequence[torch.Tensor], shapes: Sequence[tuple[int, int, int]], n: int, device: torch.device
) -> list[torch.Tensor]:
    """Given z for the top len(latents) layers, each (n or 1, Z, r, r), as float32 on the device."""
    if len(latents) > len(shapes):
        raise ValueError(f"got {len(latents)} latent layers but the model has {len(shapes)}")
    out = []
    for i, (z, shape) in enumerate(zip(latents, shapes)):
        z = torch.as_tensor(z)
        if z.dim() != 4 or tuple(z.shape[1:]) != shape or z.shape[0] not in (1, n):
            raise ValueError(
                f"latent layer {i}: expected shape ({n} or 1, {', '.join(map(str, shape))}), "
                f"got {tuple(z.shape)}"
            )
        if not torch.isfinite(z).all():
            raise ValueError(f"latent layer {i} has non-finite values")
        out.append(z.to(device, torch.float32))
    return out


def checked_low_res(hp: HParams, low_res: torch.Tensor, n: int, device: torch.device) -> torch.Tensor:
    """A super-resolution model's low-resolution input: uint8 (n, s, s, C) -> float32 on the device."""
    s, c = hp.low_res, hp.image_channels
    low_res = torch.as_tensor(low_res)
    if low_res.dim() != 4 or tuple(low_res.shape) != (n, s, s, c):
        raise ValueError(
            f"low_res: expected uint8 images of shape ({n}, {s}, {s}, {c}), got {tuple(low_res.shape)}"
        )
    if low_res.dtype != torch.uint8:
        raise ValueError(f"low_res: expected uint8 images, got {low_res.dtype}")
    return low_res.to(device)


def low_res_noise_levels(noise: NoiseLevelSpec, default: float, n: int, device: torch.device) -> torch.Tensor:
    """The std of the noise added to each image's [-1, 1] low-resolution input -> (n, 1, 1, 1)."""
    sigma = torch.as_tensor(default if noise is None else noise, dtype=torch.float32).reshape(-1)
    if sigma.numel() == 1:
        sigma = sigma.expand(n)
    if sigma.numel() != n:
        raise ValueError(f"low_res_noise: got {sigma.numel()} values for {n} images")
    if not torch.isfinite(sigma).all() or (sigma < 0).any():
        raise ValueError("low_res_noise must be finite and >= 0")
    return sigma.view(n, 1, 1, 1).to(device)
