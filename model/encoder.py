"""Bottom-up encoder: residual blocks with average-pool down-sampling (openai/vdvae `Encoder`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import Attention
from .blocks import Block, conv, scale_init
from .hparams import HParams


class Encoder(nn.Module):
    def __init__(self, hp: HParams) -> None:
        super().__init__()
        self.hp = hp
        self.in_conv = conv(hp.image_channels, hp.width, 3)
        blocks = [
            Block(
                hp.width_at(res),
                hp.bottleneck_at(res),
                hp.width_at(res),
                down_rate=down,
                residual=True,
                use_3x3=res > 2,
            )
            for res, down in hp.enc_layers
        ]
        for b in blocks:
            scale_init(b.c4, len(blocks))  # N counts every parsed block, down-sampling ones included
        self.enc_blocks = nn.ModuleList(blocks)
        # Attention after some blocks, keyed by block index; empty (no state-dict keys) by default.
        out_res = [res // (down or 1) for res, down in hp.enc_layers]
        self.attn = nn.ModuleDict({str(i): Attention(hp.width_at(out_res[i])) for i in hp.enc_attention})

    def forward(self, x_in: torch.Tensor) -> dict[int, torch.Tensor]:
        """x_in (n, H, W, C) preprocessed -> {resolution: last activation at it (n, w_r, r, r)}."""
        x = self.in_conv(x_in.permute(0, 3, 1, 2))  # (n, W, H, W)
        activations = {x.shape[2]: x}
        for i, block in enumerate(self.enc_blocks):
            x = block(x)
            res = x.shape[2]
            missing = self.hp.width_at(res) - x.shape[1]
            if missing:  # wider stream after down-sampling: zero-pad channels (ffhq1024)
                x = F.pad(x, (0, 0, 0, 0, 0, missing))
            if str(i) in self.attn:
                x = self.attn[str(i)](x)
            activations[res] = x
        return activations
