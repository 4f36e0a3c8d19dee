"""Output heads: turn the top-down stream at image resolution into p(x | z).

Both heads own one 1x1 conv named `out_conv` (the official `decoder.out_net.out_conv`) and return
their parameters NHWC, so the rest of the model treats them alike:
  nll(params, x)    per-example nats/dim of 8-bit data: the distortion term of the ELBO bound
  loss(params, x)   the training distortion (the NLL for DMoL, the sigma_q KL for the Gaussian)
  sample(params, u) images in [-1, 1]; `noise_shapes` says which uniform draws it consumes
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .blocks import conv
from .hparams import HParams
from .likelihoods import (
    discretized_gaussian_nll,
    dmol_channels,
    dmol_nll,
    dmol_sample,
    gaussian_output_loss,
    to_uint8,
)


class DmolHead(nn.Module):
    """Discretized mixture of logistics (official layout for RGB, a reduced one for grey-scale)."""

    def __init__(self, hp: HParams) -> None:
        super().__init__()
        self.channels = hp.image_channels
        self.num_mixtures = hp.num_mixtures
        self.low_bit = hp.preprocessing.low_bit
        self.out_conv = conv(hp.width, dmol_channels(hp.image_channels, hp.num_mixtures), 1)

    def forward(self, px_z: torch.Tensor) -> torch.Tensor:
        return self.out_conv(px_z).permute(0, 2, 3, 1)  # (n, H, W, out)

    def nll(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return dmol_nll(x.float(), params.float(), self.num_mixtures, self.low_bit)

    loss = nll

    def noise_shapes(self, n: int, size: int) -> list[tuple[int, ...]]:
        return [(n, size, size, self.num_mixtures), (n, size, size, self.channels)]

    def sample(self, params: torch.Tensor, noise: Sequence[torch.Tensor]) -> torch.Tensor:
        u_mix, u_logistic = noise
        return dmol_sample(params.float(), self.channels, self.num_mixtures, u_mix, u_logistic)

    def to_uint8(self, x: torch.Tensor) -> torch.Tensor:
        return to_uint8(x)  # truncation, as the official sampler


class GaussianOutput(nn.Module):
    """A per-pixel Gaussian with learned variance, from parameters that a network computed
    (n, C', H, W) with C' = 2C: means, then log-variances. The displayed sample is the mean.

    `truncate`: how the mean becomes 8-bit, as the model's own sampler does it (visual-vae's
    evaluate.py truncates; our Gaussian head rounds to the nearest level).
    """

    def __init__(self, channels: int, sigma_q: float, truncate: bool = False) -> None:
        super().__init__()
        self.channels = channels
        self.sigma_q = sigma_q
        self.truncate = truncate

    def forward(self, px_z: torch.Tensor) -> torch.Tensor:
        return px_z.permute(0, 2, 3, 1)  # (n, H, W, 2C): mean, log-variance

    def _split(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        params = params.float()
        return params[..., : self.channels], params[..., self.channels :]

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """The predicted mean (n, H, W, C), unclipped: what a next super-resolution stage may take."""
        return self._split(params)[0]

    def nll(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        mean, logvar = self._split(params)
        return discretized_gaussian_nll(x.float(), mean, logvar)

    def loss(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        mean, logvar = self._split(params)
        return gaussian_output_loss(x.float(), mean, logvar, self.sigma_q)

    def noise_shapes(self, n: int, size: int) -> list[tuple[int, ...]]:
        return []

    def sample(self, params: torch.Tensor, noise: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        return self._split(params)[0].clamp(-1.0, 1.0)

    def to_uint8(self, x: torch.Tensor) -> torch.Tensor:
        return to_uint8(x, round_=not self.truncate)


class GaussianHead(GaussianOutput):
    """The Gaussian output layer of a VDVAE: a 1x1 conv from the stream to the parameters."""

    def __init__(self, hp: HParams) -> None:
        super().__init__(hp.image_channels, hp.sigma_q)
        self.out_conv = conv(hp.width, 2 * hp.image_channels, 1)

    def forward(self, px_z: torch.Tensor) -> torch.Tensor:
        return super().forward(self.out_conv(px_z))


def make_head(hp: HParams) -> DmolHead | GaussianHead:
    return DmolHead(hp) if hp.output_head == "dmol" else GaussianHead(hp)
