"""Classifier-free guidance in the top-down pass (Luhman & Luhman 2022): the guided images of a batch,
their prior extrapolated away from the unconditional one, and the second, unconditional stream that
runs beside theirs and takes the same z.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .blocks import add_to_stream

if TYPE_CHECKING:
    from .decoder import DecBlock

# Bound on w_var * (log var_c - log var_u): guided std stays within e^±10 of the conditional std.
GUIDANCE_LOG_VAR_CLAMP = 20.0


@dataclass
class Guidance:
    """Guided images of a batch: their row indices, weights (g, 1, 1, 1) and null-label embeddings."""

    rows: torch.Tensor  # (g,) long
    w_mean: torch.Tensor
    w_var: torch.Tensor
    null_cond: torch.Tensor  # (g, class_dim)


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
    block: DecBlock, x: torch.Tensor, x_u: torch.Tensor | None, cond: torch.Tensor | None, g: Guidance | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The prior head's output for the stream, and for the unconditional stream when guided (one
    conv call for both)."""
    if g is None:
        return block.prior(x, cond), None
    feats = block.prior(torch.cat([x, x_u]), torch.cat([cond, g.null_cond]))
    return feats[: x.shape[0]], feats[x.shape[0] :]


def guided_step(
    block: DecBlock,
    x: torch.Tensor,
    x_u: torch.Tensor | None,
    feats_u: torch.Tensor | None,
    z: torch.Tensor,
    cond: torch.Tensor | None,
    g: Guidance | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Add the projected z to the stream and run the block's shared path (resnet, attention). Under
    guidance the unconditional stream of the guided images gets the same z and its own prior
    residual, and both streams share one call of each module."""
    zp = block.z_proj(z)
    if g is None:
        return block.shared(add_to_stream(x, zp), cond), None
    n = x.shape[0]
    x_u = x_u + feats_u[:, 2 * block.zdim :] + zp.index_select(0, g.rows)
    both = block.shared(torch.cat([add_to_stream(x, zp), x_u]), torch.cat([cond, g.null_cond]))
    return both[:n], both[n:]
