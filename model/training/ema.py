"""The weights' exponential moving average: what a run evaluates and exports.

At a fixed rate r (openai/vdvae's) the average still holds r**u of the initial, random weights after
u updates: 0.999**1500 = 22%, which made 1,500-step CPU runs sample speckle. With the warm-up
(`--ema-warmup`) the rate of update u is min(r, (1 + u) / (10 + u)), as TensorFlow's
ExponentialMovingAverage with num_updates: the early average follows the weights closely, and the
rate reaches r at update (10r - 1) / (1 - r) (8,991 for 0.999), after which both agree.
"""

from __future__ import annotations

import torch
from torch import nn

# Below this share of initial weights left in the exported average, a run is long enough for it.
NEGLIGIBLE_INITIAL_SHARE = 0.01


def ema_rate(rate: float, update: int, warmup: bool) -> float:
    """The average's decay at update `update` (counted from 0)."""
    return min(rate, (1 + update) / (10 + update)) if warmup else rate


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, rate: float) -> None:
    """ema <- rate * ema + (1 - rate) * model, parameter by parameter."""
    for p_ema, p in zip(ema.parameters(), model.parameters()):
        p_ema.mul_(rate).add_(p.detach(), alpha=1.0 - rate)


def short_run_warning(rate: float, steps: int, warmup: bool) -> str | None:
    """A sentence when a run of `steps` updates at a fixed rate would export an average that still
    holds more than a negligible share of its initial weights; None otherwise."""
    share = 0.0 if warmup else rate**steps
    if share <= NEGLIGIBLE_INITIAL_SHARE:
        return None
    return (
        f"note: after {steps} steps at --ema-rate {rate} the exported moving average still holds "
        f"{100 * share:.0f}% of the initial random weights; pass --ema-warmup, or a lower --ema-rate"
    )
