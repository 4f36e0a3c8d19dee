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


def tiny_base16() -> model.HParams:
    """A small class-conditional 16x16x1 model: a cascade's base stage."""
    return model.HParams.preset("tiny").replace(
        dataset="mnist", image_size=16, image_channels=1, num_mixtures=3, num_classes=10,
        enc_blocks="16x1,16d2,8x1,8d2,4x1,4d4,1x1", dec_blocks="1x1,4m1,8m4,16m8,16x1",
    )  # fmt: skip


def tiny_sr16to32() -> model.HParams:
    """A small class-conditional 16 -> 32 super-resolution model: a cascade's second stage."""
    return model.HParams.preset("tiny").replace(
        dataset="mnist", image_channels=1, num_mixtures=3, num_classes=10, low_res=16,
        enc_blocks="32x1,32d2,16x2", dec_blocks="16x2,32m16,32x1",
    )  # fmt: skip
