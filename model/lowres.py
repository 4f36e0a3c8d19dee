"""Super-resolution conditioning: the low-resolution image, its noise and the network that encodes it.

A super-resolution VAE (HParams.low_res > 0) generates an image given its average-pooled
low-resolution version. The low-resolution image, in [-1, 1] with Gaussian noise of std sigma added
(conditioning augmentation, Luhman & Luhman 2022: sigma 0.1 in training, so that at sampling the
model forgives a first stage's errors), goes through a small residual network whose features are
added to the decoder's initial top-down state at each resolution up to the low one. The posterior
heads read that state too, so inference is conditioned on the same noisy input as generation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import Block, conv, scale_init
from .hparams import HParams
from .noise import NoiseSource
from .options import LowRes, NoiseLevelSpec, checked_low_res, low_res_noise_levels


def downsample(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 images (n, H, W, C) -> uint8 (n, size, size, C): the mean of each k x k patch
    (k = H / size), rounded half to even. How a super-resolution model's low-res input is made."""
    _, h, w, _ = images.shape
    if h != w or h % size:
        raise ValueError(
            f"cannot average-pool {h}x{w} images to {size}x{size}: need square images, {size} | {h}"
        )
    x = F.avg_pool2d(images.permute(0, 3, 1, 2).float(), h // size)  # (n, C, size, size)
    return x.round_().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def to_signed_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [-1, 1] (x / 127.5 - 1), the conditioning input's range."""
    return images.float() / 127.5 - 1.0


class LowResEncoder(nn.Module):
    """Noisy low-resolution image (n, h, h, C) in [-1, 1] -> {r: features (n, width_at(r), r, r)} for
    every decoder resolution r <= h: a 3x3 input conv, `low_res_blocks` residual blocks per
    resolution with average pooling between them, and a 1x1 projection to each decoder width."""

    def __init__(self, hp: HParams) -> None:
        super().__init__()
        self.hp = hp
        self.resolutions = hp.low_res_resolutions
        w, mid = hp.width_at(hp.low_res), hp.bottleneck_at(hp.low_res)
        self.in_conv = conv(hp.image_channels, w, 3)
        self.blocks = nn.ModuleList(
            nn.ModuleList(Block(w, mid, w, residual=True, use_3x3=r > 2) for _ in range(hp.low_res_blocks))
            for r in self.resolutions
        )
        n_blocks = max(1, hp.low_res_blocks * len(self.resolutions))
        for level in self.blocks:
            for b in level:
                scale_init(b.c4, n_blocks)
        self.proj = nn.ModuleList(conv(w, hp.width_at(r), 1) for r in self.resolutions)

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        h = self.in_conv(x.permute(0, 3, 1, 2))  # (n, w, low, low)
        out = {}
        for r, level, proj in zip(self.resolutions, self.blocks, self.proj):
            if h.shape[2] != r:
                h = F.avg_pool2d(h, h.shape[2] // r)
            for block in level:
                h = block(h)
            out[r] = proj(h)
        return out

    def condition(
        self,
        low_res: LowRes,
        noise_level: NoiseLevelSpec,
        n: int,
        src: NoiseSource | None,
        image: torch.Tensor | None,
        device: torch.device,
    ) -> dict[int, torch.Tensor]:
        """The features for n images. low_res: uint8 (n, s, s, C); without it, `image` (uint8)
        average-pooled. Gaussian noise of std `noise_level` (default HParams.low_res_noise; one, or
        one per image) is added in [-1, 1], drawn from each image's conditioning stream of `src`,
        else from the global RNG (training)."""
        hp = self.hp
        if low_res is None:
            if image is None:
                raise ValueError(
                    f"this super-resolution model needs low_res: uint8 images of shape "
                    f"({n}, {hp.low_res}, {hp.low_res}, {hp.image_channels})"
                )
            low_res = downsample(image, hp.low_res)
        x = to_signed_unit(checked_low_res(hp, low_res, n, device))  # (n, s, s, C)
        sigma = low_res_noise_levels(noise_level, hp.low_res_noise, n, device)
        eps = src.conditioning([tuple(x.shape[1:])], device)[0] if src is not None else torch.randn_like(x)
        return self(x + sigma * eps)
