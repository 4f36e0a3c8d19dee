"""Classifier-free guidance in the top-down pass (Luhman & Luhman 2022): the guided images of a batch,
their prior extrapolated away from the unconditional one, and the second, unconditional stream that
runs beside theirs and takes the same z.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from .blocks import add_to_stream


class StochasticLayer(Protocol):
    """What guidance needs of a latent layer, in either family: its prior head (mean, scale and a
    residual for the stream, in that channel order) and the shared path the stream takes after z."""

    zdim: int

    def prior(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor: ...

    def shared(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor: ...


# Bound on w_var * (log var_c - log var_u): guided std stays within e^±10 of the conditional std.
GUIDANCE_LOG_VAR_CLAMP = 20.0


@dataclass
class Guidance:
    """Guided images of a batch: their row indices, weights (g, 1, 1, 1) and null-label embeddings."""

    rows: torch.Tensor  # (g,) long
    w_mean: torch.Tensor
    w_var: torch.Tensor
    null_cond: torch.Tensor  # the family's conditioning of the null label, one row per guided image


def guided_prior(
    pm: torch.Tensor, pv: torch.Tensor, pm_u: torch.Tensor, pv_u: torch.Tensor, g: Guidance
) -> tuple[torch.Tensor, torch.Tensor]:
    """Extrapolate mean and log-variance of the guided rows away from the unconditional prior."""
    pm_c = pm.index_select(0, g.rows).float()
    pv_c = pv.index_select(0, g.rows).float()
    pm_u, pv_u = pm_u.float(), pv_u.float()
    mean = pm_c + g.w_mean * (pm_c - pm_u)
    # log var = 2 log std: var = var_c * exp(w_v (log var_c - log var_u)), exponent clamped.
    exponent = (g.w_var * 2.0 * (pv_c - pv_u)).clamp(-GUIDANCE_LOG_VAR_CLAMP, GUIDANCE_LOG_VAR_CLAMP)
    logstd = pv_c + 0.5 * exponent
    return pm.float().index_copy(0, g.rows, mean), pv.float().index_copy(0, g.rows, logstd)


def prior_features(
    block: StochasticLayer,
    x: torch.Tensor,
    x_u: torch.Tensor | None,
    cond: torch.Tensor | None,
    g: Guidance | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The prior head's output for the stream, and for the unconditional stream when guided (one
    conv call for both)."""
    if g is None:
        return block.prior(x, cond), None
    feats = block.prior(torch.cat([x, x_u]), torch.cat([cond, g.null_cond]))
    return feats[: x.shape[0]], feats[x.shape[0] :]


def guided_step(
    block: StochasticLayer,
    x: torch.Tensor,
    x_u: torch.Tensor | None,
    feats_u: torch.Tensor | None,
    zp: torch.Tensor,
    cond: torch.Tensor | None,
    g: Guidance | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Add the projected z `zp` to the stream and run the block's shared path. Under guidance the
    unconditional stream of the guided images gets the same z and its own prior residual, and both
    streams share one call of each module."""
    if g is None:
        return block.shared(add_to_stream(x, zp), cond), None
    n = x.shape[0]
    x_u = x_u + feats_u[:, 2 * block.zdim :] + zp.index_select(0, g.rows)
    both = block.shared(torch.cat([add_to_stream(x, zp), x_u]), torch.cat([cond, g.null_cond]))
    return both[:n], both[n:]
