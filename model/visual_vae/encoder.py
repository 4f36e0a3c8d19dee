"""visual-vae's bottom-up encoder and a super-resolution model's low-resolution U-Net.

The encoder's activations are taken per level, just before it is down-sampled; every block of a
class-conditional encoder sees the image's true label. The U-Net turns the low-resolution image into
the decoder's initial state (it replaces the learned `initial_x`), conditioned on the generator's
label.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .blocks import AttentionLayer, Downsample, ResBlock, Upsample, conv
from .config import VisualVAEConfig, evenly_spaced_indices


class EncoderLevel(nn.Module):
    """`enc_nlayers[i]` residual blocks at one resolution, attention after evenly spaced ones, then
    the down-sampling to the next level (none at resolution 1)."""

    def __init__(
        self, c: int, nlayers: int, resolution: int, c_next: int | None, num_attention: int,
        w_scale: float, num_classes: int,
    ) -> None:  # fmt: skip
        super().__init__()
        after = set(evenly_spaced_indices(nlayers, num_attention))
        layers: list[nn.Module] = []
        for i in range(nlayers):
            layers.append(ResBlock(c, c, w_scale=w_scale, num_classes=num_classes, is_conv=resolution >= 4))
            if i in after:  # 0-based block index against their 1-based positions: one block later
                layers.append(AttentionLayer(c))
        if resolution > 1:
            layers.append(Downsample(c, c_next, 2 if resolution > 4 else 4))
        self.layer_list = nn.ModuleList(layers)

    def forward(
        self, x: torch.Tensor, labels: torch.Tensor | None, last: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(the stream for the next level, this level's activation). The last level's down-sampling,
        which no one reads, is skipped."""
        for layer in self.layer_list:
            if isinstance(layer, Downsample):
                return (x if last else layer(x)), x
            x = layer(x, labels) if isinstance(layer, ResBlock) else layer(x)
        return x, x


class Encoder(nn.Module):
    def __init__(self, cfg: VisualVAEConfig) -> None:
        super().__init__()
        widths = cfg.enc_widths
        w_scale = 1 / math.sqrt(sum(cfg.enc_nlayers))
        self.in_proj = conv(3, widths[0], 3)
        self.encoder_levels = nn.ModuleList(
            EncoderLevel(
                widths[i],
                cfg.enc_nlayers[i],
                r,
                widths[i + 1] if i + 1 < cfg.levels else None,
                cfg.num_attention[i],
                w_scale,
                cfg.num_classes,
            )
            for i, r in enumerate(cfg.resolutions)
        )

    def forward(self, x_in: torch.Tensor, labels: torch.Tensor | None) -> list[torch.Tensor]:
        """x_in (n, H, W, 3) in [-1, 1] -> the activation of each level (n, C_enc[i], r, r), highest
        resolution first."""
        x = self.in_proj(x_in.permute(0, 3, 1, 2))  # (n, C_enc[0], H, W)
        acts = []
        for i, level in enumerate(self.encoder_levels):
            x, a = level(x, labels, last=i + 1 == len(self.encoder_levels))
            acts.append(a)
        return acts


class LowResUnet(nn.Module):
    """Their LowresEncodingUnet: a 1x1 input projection, then per level `nlayers[i]` 3x3 residual
    blocks with average pooling between levels; back up, each block first fuses the stream with the
    skip of its level (a 3x3 conv of both), nearest-neighbour up-sampling between levels."""

    def __init__(self, c: int, nlayers: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        w_scale = 1 / math.sqrt(2.0 * sum(nlayers))
        self.in_proj = conv(3, c, 1)
        down = []
        for i, k in enumerate(nlayers):
            level: list[nn.Module] = [
                ResBlock(c, c, w_scale=w_scale, num_classes=num_classes) for _ in range(k)
            ]
            if i < len(nlayers) - 1:
                level.append(Downsample(c, None, 2))
            down.append(nn.ModuleList(level))
        self.down_resblocks = nn.ModuleList(down)
        up = []
        for i in reversed(range(len(nlayers))):
            level = []
            for _ in range(nlayers[i]):
                level += [conv(2 * c, c, 3), ResBlock(c, c, w_scale=w_scale, num_classes=num_classes)]
            if i > 0:
                level.append(Upsample(c, None, 2))
            up.append(nn.ModuleList(level))
        self.up_resblocks = nn.ModuleList(up)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """x (n, 3, s, s) -> the decoder's initial state (n, c, s, s), in x's dtype (float32 under
        autocast: it starts the decoder's residual stream)."""
        dtype = x.dtype
        x = self.in_proj(x)
        skips = []
        for level in self.down_resblocks:
            for layer in level:
                if isinstance(layer, Downsample):
                    skips.append(x)
                    x = layer(x)
                else:
                    x = layer(x, labels)
        skips.append(x)
        for level, skip in zip(self.up_resblocks, reversed(skips)):
            for layer in level:
                if isinstance(layer, nn.Conv2d):
                    x = layer(torch.cat((x, skip), dim=1))
                elif isinstance(layer, ResBlock):
                    x = layer(x, labels)
                else:
                    x = layer(x)
        return x.to(dtype)
