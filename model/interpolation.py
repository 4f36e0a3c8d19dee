"""Interpolation between images in the space of their random draws.

A straight line in z leaves the prior: each layer's prior depends on the layers above it, so a
mixture of two images' z is unlikely under it. Instead every image is described by its draws
(model.noise.Draws): per latent layer the standardized prior noise eps = (z - mu_p) / sigma_p,
which for a seed is exactly the standard normal draw the seed makes and for an image comes from its
posterior sample, computed along the same top-down pass (VDVAE.draws). Interpolating eps layer by
layer and decoding it top-down at temperature 1 puts each intermediate z where the prior, given the
layers above, expects it. eps is high-dimensional Gaussian noise, which concentrates on a sphere:
the interpolation is spherical, so the intermediate draws keep the norm of a real draw.

The output layer's uniform draws are interpolated the same way through the normal quantile, so the
whole path is smooth and both ends are exactly the endpoint images.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .noise import Draws

# Below this sine of the angle between two draws, slerp falls back to the straight line.
PARALLEL_SIN = 1e-6
# The open interval of the output layer's uniforms (model.noise.NoiseSource.uniform).
UNIFORM_LOW, UNIFORM_HIGH = 1e-5, 1.0 - 1e-5


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of each row: a, b (n, ...) at t (n,) in [0, 1]; row b of the result
    is exactly a[b] at t = 0 and b[b] at t = 1."""
    n = a.shape[0]
    fa, fb = a.reshape(n, -1).double(), b.reshape(n, -1).double()
    t64 = t.to(fa.device, torch.float64).view(n, 1)
    cos = (fa * fb).sum(1, keepdim=True) / (fa.norm(dim=1, keepdim=True) * fb.norm(dim=1, keepdim=True))
    omega = torch.arccos(cos.nan_to_num(1.0).clamp(-1.0, 1.0))  # (n, 1); a zero row counts as parallel
    sin = torch.sin(omega)
    parallel = sin < PARALLEL_SIN
    safe = torch.where(parallel, torch.ones_like(sin), sin)
    wa = torch.where(parallel, 1.0 - t64, torch.sin((1.0 - t64) * omega) / safe)
    wb = torch.where(parallel, t64, torch.sin(t64 * omega) / safe)
    out = (wa * fa + wb * fb).to(a.dtype)
    out = torch.where(t64 == 0.0, fa.to(a.dtype), out)
    out = torch.where(t64 == 1.0, fb.to(a.dtype), out)
    return out.view_as(a)


def slerp_uniform(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """slerp of uniform draws through the normal quantile: Phi(slerp(Phi^-1(a), Phi^-1(b), t)), kept
    in the sampler's open interval; exactly a at t = 0 and b at t = 1."""
    n = a.shape[0]
    mixed = torch.special.ndtr(slerp(torch.special.ndtri(a.double()), torch.special.ndtri(b.double()), t))
    mixed = mixed.clamp(UNIFORM_LOW, UNIFORM_HIGH).to(a.dtype)
    ends = t.to(a.device).view(n, *([1] * (a.dim() - 1)))
    return torch.where(ends == 0.0, a, torch.where(ends == 1.0, b, mixed))


def path_draws(start: Draws, end: Draws, below: Draws, t: torch.Tensor, layers: Sequence[int]) -> Draws:
    """The draws of n images on interpolation paths, one row each: row b slerps its top layers[b]
    latent layers from start to end at t[b] and takes the layers below from `below`. Its output
    layer's draws are interpolated too when every latent layer is, else they come from `below`.

    start, end, below: Draws of n rows (repeat an endpoint's row for every image on its path).
    """
    n, num_layers = len(start), len(start.latent)
    k = torch.as_tensor(list(layers), dtype=torch.long)
    if k.numel() != n or bool((k < 0).any()) or bool((k > num_layers).any()):
        raise ValueError(f"layers must give one count in 0..{num_layers} per image")
    latent = []
    for i, (a, b, rest) in enumerate(zip(start.latent, end.latent, below.latent)):
        mask = (k > i).to(a.device).view(n, *([1] * (a.dim() - 1)))
        latent.append(torch.where(mask, slerp(a, b, t), rest))
    pixel = []
    for a, b, rest in zip(start.pixel, end.pixel, below.pixel):
        mask = (k == num_layers).to(a.device).view(n, *([1] * (a.dim() - 1)))
        pixel.append(torch.where(mask, slerp_uniform(a, b, t), rest))
    return Draws(latent, pixel)


def path_temperature(
    layers: Sequence[int], temperature: Sequence[float] | Sequence[Sequence[float]], num_layers: int
) -> torch.Tensor:
    """(n, L) temperatures of images on interpolation paths: 1 for the interpolated layers (their
    draws decode to the endpoint images exactly there), the given temperature below.

    temperature: per image one float or one float per latent layer."""
    rows = []
    for k, temp in zip(layers, temperature):
        row = [float(temp)] * num_layers if isinstance(temp, int | float) else [float(x) for x in temp]
        rows.append([1.0] * k + row[k:])
    return torch.tensor(rows, dtype=torch.float32)


def steps_t(steps: int) -> list[float]:
    """steps evenly spaced points from 0 to 1, both ends included."""
    if steps < 2:
        raise ValueError(f"an interpolation needs at least 2 steps, got {steps}")
    return [i / (steps - 1) for i in range(steps)]
