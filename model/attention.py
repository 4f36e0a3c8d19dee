"""Single-head self-attention over the positions of a feature map (Luhman & Luhman 2022).

With one head, q.k^T = x Wq (x Wk)^T = x (Wq Wk^T) x^T, so one projection of the queries against the
raw features (k = x) is as expressive as separate q and k projections; the values are the features
themselves (v = x) and the output projection, zero-initialised, does the work of a value projection.
At initialisation the block is the identity: a model with attention starts as the same model
without it. There is no positional encoding, so the block is equivariant to permuting positions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def attend(x: torch.Tensor, q_proj: nn.Linear, out_proj: nn.Linear) -> torch.Tensor:
    """x + out(softmax(q(x) x^T / sqrt(C)) x) for x (n, C, H, W), per image, over its H*W positions.
    Both families' attention blocks compute this; they differ only in their modules' names and init."""
    n, c, h, w = x.shape
    tokens = x.flatten(2).transpose(1, 2)  # (n, HW, C)
    q = q_proj(tokens)
    # (n, 1, HW, C): one head; scale 1/sqrt(C) is the default.
    attended = F.scaled_dot_product_attention(q[:, None], tokens[:, None], tokens[:, None])[:, 0]
    y = out_proj(attended).transpose(1, 2).reshape(n, c, h, w)  # (n, C, H, W)
    return x + y


class Attention(nn.Module):
    """x + out(softmax(q(x) x^T / sqrt(C)) x), per image, over its H*W positions."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.q = nn.Linear(width, width)
        self.out = nn.Linear(width, width)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return attend(x, self.q, self.out)
