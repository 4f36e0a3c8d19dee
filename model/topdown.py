"""What every family's top-down pass shares: where each image's z comes from, how a layer draws it,
and where a pass stopped.

Both decoders (the VDVAE one in model.decoder, visual-vae's in model.visual_vae.decoder) run one
loop over their latent layers for every use: the posterior pass of training and encoding, prior
sampling, decoding from given latents, partial reconstruction (posterior for an image's top k
layers, prior below, in one pass) and classifier-free guidance. Each image can have its own k,
temperature and guidance. A pass can also run in pieces (`stop`, then `start` from the `Streams`
it stopped at) and branch off at a piece's end: progressive previews resolution by resolution.

Scales are log standard deviations throughout: a family whose layers predict variances converts
them before they reach `layer_z`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from .guidance import Guidance, guided_prior
from .likelihoods import gaussian_kl

# A diagonal Gaussian as (mean, log-std), each (n, Z, r, r).
Gaussian = tuple[torch.Tensor, torch.Tensor]


@dataclass
class Streams:
    """A top-down pass between two layers: `layer` layers done, the stream of each resolution reached
    (one entry for a family with a single stream), and the unconditional streams of the guided
    images."""

    layer: int
    xs: dict[int, torch.Tensor]
    xs_u: dict[int, torch.Tensor]

    def copy(self) -> Streams:
        """Streams a resumed pass may change in place without touching these (the loops add into
        their streams in place when autograd is off)."""
        return Streams(
            self.layer,
            {r: x.clone() for r, x in self.xs.items()},
            {r: x.clone() for r, x in self.xs_u.items()},
        )


@dataclass
class TopDown:
    """What one top-down pass (or the piece of it one call ran) produced; the per-layer lists hold
    the layers that call ran."""

    px_z: torch.Tensor | None  # what the family's output head takes (None when the pass stopped early)
    streams: Streams  # where the pass stopped: resume it with top_down(start=...)
    kl: list[torch.Tensor] = field(default_factory=list)  # per layer (n,) nats; zeros where not posterior
    z: list[torch.Tensor] = field(default_factory=list)  # per layer (n, Z, r, r) (when kept)
    q_mean: list[torch.Tensor] = field(default_factory=list)
    q_logstd: list[torch.Tensor] = field(default_factory=list)
    p_mean: list[torch.Tensor] = field(default_factory=list)  # the prior each z was drawn against (kept)
    p_logstd: list[torch.Tensor] = field(default_factory=list)

    def keep(self, z: torch.Tensor, prior: Gaussian, q: Gaussian | None) -> None:
        """Record one layer's z, the prior it was drawn against, and its posterior where it has one."""
        self.z.append(z)
        self.p_mean.append(prior[0])
        self.p_logstd.append(prior[1])
        if q is not None:
            self.q_mean.append(q[0])
            self.q_logstd.append(q[1])


def resolution_stops(resolutions: Sequence[int]) -> list[tuple[int, int]]:
    """(resolution, end layer) of each run of consecutive latent layers at one resolution, top-down:
    where a pass can stop to show what it has drawn so far."""
    return [
        (r, i + 1) for i, r in enumerate(resolutions) if i + 1 == len(resolutions) or resolutions[i + 1] != r
    ]


@dataclass
class LayerSources:
    """Where each image's z comes from: given latents for its top `given[b]` layers, else its
    posterior for its top `posterior[b]` layers, else the prior. Decided on the CPU before the
    layer loop (so the loop never waits on the device); the (n, 1, 1, 1) depth tensors exist only
    when the images of the batch differ."""

    given_min: int
    given_max: int
    posterior_min: int
    posterior_max: int
    given_dev: torch.Tensor | None
    posterior_dev: torch.Tensor | None

    @classmethod
    def plan(
        cls,
        n: int,
        posterior_layers: Sequence[int] | None,
        latent_layers: Sequence[int] | None,
        num_given: int,
        device: torch.device,
    ) -> LayerSources:
        ks = list(posterior_layers) if posterior_layers is not None else [0] * n
        given = list(latent_layers) if latent_layers is not None else [num_given] * n
        if max(given, default=0) > num_given:
            raise ValueError(f"latent_layers asks for {max(given)} given layers but {num_given} were passed")

        def depths(counts: list[int]) -> torch.Tensor | None:
            if min(counts, default=0) == max(counts, default=0):
                return None
            return torch.tensor(counts, device=device).view(n, 1, 1, 1)

        return cls(
            given_min=min(given, default=0),
            given_max=max(given, default=0),
            posterior_min=min(ks, default=0),
            posterior_max=max(ks, default=0),
            given_dev=depths(given),
            posterior_dev=depths(ks),
        )

    def draws(self, i: int) -> bool:
        """Some image draws layer i (from its posterior or the prior) rather than taking a given z."""
        return i >= self.given_min

    def from_prior(self, i: int) -> bool:
        """Some image samples layer i from the prior."""
        return i >= self.posterior_min

    def from_posterior(self, i: int) -> bool:
        """Some image takes layer i from its posterior (the posterior head must run)."""
        return i < self.posterior_max

    def gives(self, i: int) -> bool:
        """Some image takes a given z at layer i."""
        return i < self.given_max


def layer_z(
    i: int,
    src: LayerSources,
    prior: Gaussian,
    prior_u: Gaussian | None,
    q: Gaussian | None,
    latents: Sequence[torch.Tensor],
    noise: Sequence[torch.Tensor] | None,
    log_temperature: torch.Tensor | None,
    g: Guidance | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Layer i's z for every image, each from its own source, and the KL (n,) in nats of the images
    that take it from their posterior (zero for the others).

    prior: the layer's prior (mean, log-std) for the batch; prior_u: the unconditional prior of the
    guided rows (under guidance); q: the posterior, when some image takes this layer from it.
    Prior and posterior draws share one standard normal eps per image, so an image's z does not
    depend on which sources the other images of the batch use.
    """
    pm, pv = prior
    n = pm.shape[0]
    z, kl = None, None
    if src.draws(i):  # some image draws this layer rather than taking a given z
        eps = noise[i] if noise is not None else None
        if src.from_prior(i):
            if eps is None:
                eps = torch.randn_like(pm, dtype=torch.float32)
            mean, logstd = pm, pv
            if g is not None:
                mean, logstd = guided_prior(pm, pv, prior_u[0], prior_u[1], g)
            if log_temperature is not None:
                logstd = logstd + log_temperature[:, i].view(n, 1, 1, 1)
            z = torch.exp(logstd) * eps + mean
        if q is not None:
            qm, qv = q
            if eps is None:
                eps = torch.randn_like(qm, dtype=torch.float32)
            z_q = torch.exp(qv) * eps + qm
            kl = gaussian_kl(qm.float(), pm.float(), qv.float(), pv.float()).sum(dim=(1, 2, 3))
            if z is None:  # every image takes this layer from its posterior
                z = z_q
            else:
                in_post = src.posterior_dev > i  # (n, 1, 1, 1)
                z = torch.where(in_post, z_q, z)
                kl = kl * in_post.view(n)
    if src.gives(i):
        z_given = latents[i].to(pm.dtype).expand(n, -1, -1, -1)
        z = z_given if z is None else torch.where(src.given_dev > i, z_given, z)
    return z, kl if kl is not None else pm.new_zeros(n, dtype=torch.float32)
