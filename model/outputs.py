"""What the user-level calls of VDVAE return: encodings, reconstructions, progressive stages."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from .likelihoods import LN2


@dataclass
class Encoding:
    """Posterior of a batch: behaves as the list of z (one (n, Z, r, r) tensor per layer)."""

    z: list[torch.Tensor]
    mean: list[torch.Tensor]  # posterior means, per layer
    std: list[torch.Tensor]  # posterior standard deviations, per layer
    kl: torch.Tensor  # (n, L) nats per layer
    distortion: torch.Tensor | None  # (n,) nats/dim, when the 8-bit target was known
    dims: int  # H * W * C
    prior_mean: list[torch.Tensor] = field(default_factory=list)  # the prior each z was drawn against
    prior_std: list[torch.Tensor] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.z)

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter(self.z)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.z[i]

    @property
    def kl_bits(self) -> torch.Tensor:
        """(n, L) KL of each latent layer in bits."""
        return self.kl / LN2

    @property
    def rate(self) -> torch.Tensor:
        """(n,) total KL in nats per dim."""
        return self.kl.sum(dim=1) / self.dims

    @property
    def prior_noise(self) -> list[torch.Tensor]:
        """Per layer (n, Z, r, r): the standardized prior noise eps = (z - mu_p) / sigma_p of each z,
        the draw that gives z when the prior (given the layers above) is sampled at temperature 1."""
        return [(z - m) / s for z, m, s in zip(self.z, self.prior_mean, self.prior_std)]

    @property
    def elbo(self) -> torch.Tensor | None:
        """(n,) negative ELBO in nats per dim (None without a target)."""
        return None if self.distortion is None else self.distortion + self.rate

    @property
    def bits_per_dim(self) -> torch.Tensor | None:
        """(n,) negative ELBO in bits per dim (None without a target)."""
        return None if self.distortion is None else self.elbo / LN2


@dataclass
class Reconstruction:
    """Partial posterior reconstructions of a batch."""

    images: torch.Tensor  # (n, H, W, C) uint8
    bits: torch.Tensor  # (n,) bits of KL taken from the image's posterior (the bits it used)
    seeds: list[int]


@dataclass
class Stage:
    """One resolution of a progressive sample (VDVAE.sample_stages)."""

    resolution: int
    layers: int  # latent layers drawn so far, top-down
    images: torch.Tensor  # (n, H, W, C) uint8: the preview, or the samples at the last stage
    final: bool
