"""The building blocks of visual-vae's network, under their state-dict names.

Each module's attributes carry the names of tcl9876/visual-vae's `visual_vae/torch/nn.py`, so their
released state dicts load unchanged. Their initialisation is kept too (xavier-uniform conv weights
with PyTorch's default biases, the residual branches' last conv scaled by w_scale), so a model built
here starts where theirs does.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from ..attention import attend


def conv(c_in: int, c_out: int, kernel: int, w_scale: float = 1.0, bias: bool = True) -> nn.Conv2d:
    """A 'same'-padded conv with xavier-uniform weights times w_scale (their Conv2D)."""
    c = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=bias)
    nn.init.xavier_uniform_(c.weight)
    with torch.no_grad():
        c.weight.mul_(w_scale)
    return c


def silu(x: torch.Tensor, private: bool) -> torch.Tensor:
    """SiLU, in place when `x` is private to the caller and autograd is off (no new activation)."""
    return F.silu(x, inplace=private and torch.is_inference_mode_enabled())


class ResBlock(nn.Module):
    """[label] -> SiLU -> conv1 -> SiLU -> conv2, plus the input when the widths agree.

    Class-conditional blocks embed the label (row num_classes: the null label) into c // 4 values,
    project them to the input width and add them to the input before the first activation; the
    residual path keeps the unconditioned input. `spectral`: the prior and posterior heads, whose
    conv2 sits in their spectral-regularisation wrapper (keys `conv2.conv.*`, no residual).
    Kernels are 3x3, or 1x1 at resolution 1 (`is_conv` False).
    """

    def __init__(
        self,
        c: int,
        c_out: int,
        c_in: int | None = None,
        w_scale: float = 1.0,
        num_classes: int = 0,
        is_conv: bool = True,
        spectral: bool = False,
    ) -> None:
        super().__init__()
        c_in = c_in or c
        if num_classes > 0:
            self.label_emb = nn.Embedding(num_classes + 1, c // 4)
            self.label_proj = nn.Linear(c // 4, c_in)
        else:
            self.label_emb = self.label_proj = None
        k = 3 if is_conv else 1
        self.conv1 = conv(c_in, c, k)
        out = conv(c, c_out, k, w_scale=w_scale)
        self.conv2 = nn.Sequential(OrderedDict(conv=out)) if spectral else out
        self.residual = not spectral and c_in == c_out

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = x
        if self.label_emb is not None:
            h = x + self.label_proj(self.label_emb(labels))[:, :, None, None]  # (n, c_in, 1, 1) broadcast
        h = self.conv1(silu(h, private=h is not x))
        h = self.conv2(silu(h, private=True))
        if not self.residual:
            return h
        # In place only when that keeps the stream's dtype (under autocast h is bf16/fp16).
        if torch.is_inference_mode_enabled() and h.dtype == x.dtype:
            return h.add_(x)
        return x + h


class AttentionLayer(nn.Module):
    """Single-head self-attention (model.attention.attend) with their names: `qproj`, `outproj`.
    outproj's weight starts at zero but its bias does not, as theirs."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.qproj = nn.Linear(c, c)
        self.outproj = nn.Linear(c, c)
        nn.init.zeros_(self.outproj.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return attend(x, self.qproj, self.outproj)


class Downsample(nn.Module):
    """Average pooling by `stride`, then a 3x3 conv when the width changes (`conv_layer`). The stream
    keeps its dtype (float32 under autocast: the residual stream accumulates over every layer)."""

    def __init__(self, c_in: int, c_out: int | None, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv_layer = conv(c_in, c_out, 3) if c_out is not None and c_out != c_in else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(x, self.stride)
        return x if self.conv_layer is None else self.conv_layer(x).to(x.dtype)


class Upsample(nn.Module):
    """Nearest-neighbour up-sampling by `stride` (their "area" interpolation, which equals it when
    enlarging), then a 3x3 conv when the width changes (`conv_layer`); the stream keeps its dtype."""

    def __init__(self, c_in: int, c_out: int | None, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv_layer = conv(c_in, c_out, 3) if c_out is not None and c_out != c_in else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=self.stride, mode="nearest")
        return x if self.conv_layer is None else self.conv_layer(x).to(x.dtype)
