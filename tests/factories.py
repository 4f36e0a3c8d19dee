"""Test data shared by every test package: small models with non-trivial weights, random images."""

from __future__ import annotations

import json
from pathlib import Path

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


# ------------------------------------------------------------------------------------------------
# The visual-vae family: small models of each kind, with weights in their layout
# ------------------------------------------------------------------------------------------------

VISUAL_VAE_KINDS = {
    # Unconditional 16x16 (the shape of the conformance suite's public case).
    "uncond16": dict(resolution=16, c=16, c_enc=16, c_mult=[1, 1, 1, 1], num_classes=0, nlayers=[2, 2, 1, 1],
                     enc_nlayers=[1, 1, 1, 1], num_attention=[0, 0, 0, 0], num_final_blocks=1,
                     is_superres=False, superres_nlayers=None, zdim=4),
    # Class-conditional 8x8 with attention: a cascade's base.
    "cond8": dict(resolution=8, c=16, c_enc=8, c_mult=[1, 2, 2], num_classes=10, nlayers=[2, 2, 1],
                  enc_nlayers=[1, 1, 1], num_attention=[1, 0, 0], num_final_blocks=1, is_superres=False,
                  superres_nlayers=None, zdim=4),
    # Class-conditional 8 -> 16 super-resolution: the cascade's second stage.
    "sr8to16": dict(resolution=16, c=16, c_enc=16, c_mult=[1, 2], num_classes=10, nlayers=[2, 2],
                    enc_nlayers=[1, 1], num_attention=[0, 1], num_final_blocks=1, is_superres=True,
                    superres_nlayers=[1, 1], zdim=4),
}  # fmt: skip


def visual_vae(kind: str, seed: int = 0) -> model.VisualVAE:
    """A small visual-vae model whose zero- and tiny-initialised parts (initial_x, attention, the
    prior heads) are non-trivial."""
    torch.manual_seed(seed)
    vae = model.VisualVAE.from_config({"model": VISUAL_VAE_KINDS[kind]})
    with torch.no_grad():
        for p in vae.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return vae.eval()


def visual_vae_file(kind: str, path: Path, seed: int = 0) -> Path:
    """The model's state dict saved as their `*_ema_weights.pt` files are (torch.save of state_dict)."""
    torch.save(visual_vae(kind, seed).state_dict(), path)
    return path


def visual_vae_config_file(kind: str, path: Path) -> Path:
    """Their config's sections as JSON, as `vdvae convert --config` takes it."""
    path.write_text(json.dumps({"model": VISUAL_VAE_KINDS[kind], "training": {"sigma_q": 0.025}}))
    return path
