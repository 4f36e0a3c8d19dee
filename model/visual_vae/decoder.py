"""visual-vae's latent layers and decoder levels.

A latent layer (their StochasticConvLayer) reads one stream x of its level's width:
  prior head     ResBlock(x, y_gen)            -> mean, raw variance v, residual h  (C + 2Z channels)
  posterior head ResBlock(cat(x, act), y_true) -> mean, raw variance v              (2Z channels)
  var = softplus(0.693 v) / 0.693, z = mean + sqrt(var) * eps * T
  x <- shared ResBlock(x + h + zproj(z), y_gen)
A level is its latent layers, attention layers after evenly spaced ones, and the up-sampling to
the next level. The pass itself is model.topdown's, run by VisualVAE.top_down.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import AttentionLayer, ResBlock, Upsample, conv
from .config import VisualVAEConfig, evenly_spaced_indices

# Their variance smoothing: var = log(1 + exp(0.693 v)) / 0.693 (0.693, not ln 2: the weights were
# trained with this constant).
VARIANCE_BETA = 0.693
# Below this, log(softplus(u)) equals u to float32 precision; the direct form would underflow to
# log(0) a little further down, where theirs gives a zero variance (and an infinite KL).
_SOFTPLUS_LINEAR_BELOW = -20.0


def smoothed_log_std(v: torch.Tensor) -> torch.Tensor:
    """log sqrt(var) of their smoothed variance var = softplus(0.693 v) / 0.693, in float32, finite
    for every finite v (their log(1 + exp(.)) overflows above v ~ 128 and gives log 0 below ~ -24)."""
    u = VARIANCE_BETA * v.float()
    log_softplus = torch.where(u < _SOFTPLUS_LINEAR_BELOW, u, torch.log(F.softplus(u)))
    return 0.5 * (log_softplus - math.log(VARIANCE_BETA))


class StochasticLayer(nn.Module):
    def __init__(
        self, c: int, c_enc: int, zdim: int, resolution: int, w_scale: float, num_classes: int, level: int
    ) -> None:
        super().__init__()
        self.zdim, self.resolution, self.level = zdim, resolution, level
        k3 = resolution >= 4
        # The prior's output conv starts at 1e-10: the prior starts as N(0, 1) and adds nothing.
        self.prior_block = ResBlock(
            c, c + 2 * zdim, w_scale=1e-10, num_classes=num_classes, is_conv=k3, spectral=True
        )
        self.posterior_block = ResBlock(
            c, 2 * zdim, c_in=c + c_enc, num_classes=num_classes, is_conv=k3, spectral=True
        )
        self.zproj = conv(zdim, c, 1, w_scale=w_scale, bias=False)
        self.shared_block = ResBlock(c, c, w_scale=w_scale, num_classes=num_classes, is_conv=k3)

    def prior(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """(n, 2Z + C, r, r): mean, raw variance, the residual for the stream."""
        return self.prior_block(x, labels)

    def split_prior(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The prior head's output -> mean, log-std, residual added to the stream."""
        z = self.zdim
        return feats[:, :z], smoothed_log_std(feats[:, z : 2 * z]), feats[:, 2 * z :]

    def posterior(
        self, x: torch.Tensor, act: torch.Tensor, labels: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior's mean and log-std (n, Z, r, r) given the stream and the encoder's activation."""
        mean, v = self.posterior_block(torch.cat([x, act], dim=1), labels).chunk(2, dim=1)
        return mean, smoothed_log_std(v)

    def shared(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return self.shared_block(x, labels)


class DecoderLevel(nn.Module):
    """One resolution of the decoder: its latent layers (attention after evenly spaced ones, by
    their 1-based position) and the up-sampling to the next level's resolution and width."""

    def __init__(self, cfg: VisualVAEConfig, i: int) -> None:
        super().__init__()
        c, r = cfg.widths[i], cfg.resolutions[i]
        w_scale = 1 / math.sqrt(sum(cfg.nlayers))
        after = set(evenly_spaced_indices(cfg.nlayers[i], cfg.num_attention[i]))
        layers: list[nn.Module] = []
        for j in range(1, cfg.nlayers[i] + 1):
            layers.append(StochasticLayer(c, cfg.enc_widths[i], cfg.zdim, r, w_scale, cfg.num_classes, i))
            if j in after:
                layers.append(AttentionLayer(c))
        if i > 0:  # not the image resolution
            layers.append(Upsample(c, cfg.widths[i - 1], 2 if r >= 4 else 4))
        self.layer_list = nn.ModuleList(layers)

    def steps(self) -> list[tuple[StochasticLayer, tuple[nn.Module, ...]]]:
        """Each latent layer with the modules that follow it before the next one (attention,
        up-sampling): what one step of the top-down pass runs."""
        out: list[tuple[StochasticLayer, list[nn.Module]]] = []
        for layer in self.layer_list:
            if isinstance(layer, StochasticLayer):
                out.append((layer, []))
            else:
                out[-1][1].append(layer)
        return [(layer, tuple(tail)) for layer, tail in out]
