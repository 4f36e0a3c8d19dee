"""Test data shared by every test package: small models with non-trivial weights, random images."""

from __future__ import annotations

import torch

import model


def perturbed(hp: model.HParams, seed: int = 0, scale: float = 0.05) -> model.VDVAE:
    """A model whose prior, residual outputs and heads are all non-zero (fresh init zeroes some)."""
    torch.manual_seed(seed)
    vae = model.VDVAE(hp)
    with torch.no_grad():
        for p in vae.parameters():
            p.add_(torch.randn_like(p) * scale)
    return vae.eval()


def random_images(n: int, size: int = 32, channels: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, size, size, channels), dtype=torch.uint8, generator=g)
