"""Top-down decoder: one stochastic block per latent layer (openai/vdvae `Decoder`/`DecBlock`).

A single loop, `Decoder.top_down`, serves every use: the posterior pass of training and encoding,
prior sampling, decoding from given latents, partial reconstruction (posterior for an image's top
k layers, prior below, in one pass), and classifier-free guidance (a second, unconditional stream
for the guided images, fed the same z). Each image can have its own k, temperature and guidance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import Block, conv, scale_init
from .heads import make_head
from .hparams import HParams
from .likelihoods import gaussian_kl

# Bound on w_var * (log var_c - log var_u): guided std stays within e^±10 of the conditional std.
GUIDANCE_LOG_VAR_CLAMP = 20.0


def _add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """x + y, in place when autograd is off and x is not a view (of bias_xs, say, which an
    in-place add would corrupt); the stream tensors the loop creates are never views."""
    if torch.is_inference_mode_enabled() and x._base is None:
        return x.add_(y)
    return x + y


class DecBlock(nn.Module):
    """Posterior head `enc`, prior head `prior` (mean, log-std and a residual `xpp`), `z_proj`, `resnet`."""

    def __init__(self, hp: HParams, res: int, mixin: int | None, n_blocks: int) -> None:
        super().__init__()
        self.base, self.mixin, self.zdim = res, mixin, hp.zdim
        self.width = w = hp.width_at(res)
        mid, k3 = hp.bottleneck_at(res), res > 2
        cond = hp.class_dim if hp.conditional else 0
        self.enc = Block(2 * w, mid, 2 * hp.zdim, use_3x3=k3, cond_dim=cond)
        # Zero-initialised last conv: the prior starts as N(0, I) and adds nothing to the stream.
        self.prior = Block(w, mid, 2 * hp.zdim + w, use_3x3=k3, zero_last=True, cond_dim=cond)
        self.z_proj = conv(hp.zdim, w, 1)
        scale_init(self.z_proj, n_blocks)
        self.resnet = Block(w, mid, w, residual=True, use_3x3=k3, cond_dim=cond)
        scale_init(self.resnet.c4, n_blocks)

    def stream_input(self, xs: dict[int, torch.Tensor], n: int, like: torch.Tensor) -> torch.Tensor:
        """The stream at this block's resolution (zeros if none yet) plus the up-sampled mixin."""
        x = xs.get(self.base)
        if x is None:
            x = like.new_zeros(n, self.width, self.base, self.base)
        if self.mixin is not None:
            low = xs[self.mixin][:, : self.width]  # a wider low-resolution stream is sliced
            x = x + F.interpolate(low, scale_factor=self.base // self.mixin)  # nearest neighbour
        return x

    def split_prior(self, feats: torch.Tensor):
        """(n, 2Z + w, r, r) -> prior mean, prior log-std, residual added to the stream."""
        z = self.zdim
        return feats[:, :z], feats[:, z : 2 * z], feats[:, 2 * z :]


@dataclass
class Guidance:
    """Guided images of a batch: their row indices, weights (g, 1, 1, 1) and null-label embeddings."""

    rows: torch.Tensor  # (g,) long
    w_mean: torch.Tensor
    w_var: torch.Tensor
    null_cond: torch.Tensor  # (g, class_dim)


@dataclass
class TopDown:
    """What one top-down pass produced."""

    px_z: torch.Tensor  # (n, width, H, W): the stream at image resolution after gain and bias
    kl: list[torch.Tensor] = field(default_factory=list)  # per layer (n,) nats; zeros where not posterior
    z: list[torch.Tensor] = field(default_factory=list)  # per layer (n, Z, r, r) (when kept)
    q_mean: list[torch.Tensor] = field(default_factory=list)
    q_logstd: list[torch.Tensor] = field(default_factory=list)


def _guided_prior(pm, pv, pm_u, pv_u, g: Guidance):
    """Extrapolate mean and log-variance of the guided rows away from the unconditional prior."""
    pm_c = pm.index_select(0, g.rows).float()
    pv_c = pv.index_select(0, g.rows).float()
    pm_u, pv_u = pm_u.float(), pv_u.float()
    mean = pm_c + g.w_mean * (pm_c - pm_u)
    # log var = 2 log std: var = var_c * exp(w_v (log var_c - log var_u)), exponent clamped.
    exponent = (g.w_var * 2.0 * (pv_c - pv_u)).clamp(-GUIDANCE_LOG_VAR_CLAMP, GUIDANCE_LOG_VAR_CLAMP)
    logstd = pv_c + 0.5 * exponent
    return pm.float().index_copy(0, g.rows, mean), pv.float().index_copy(0, g.rows, logstd)


class Decoder(nn.Module):
    def __init__(self, hp: HParams) -> None:
        super().__init__()
        self.hp = hp
        n = hp.num_layers
        self.dec_blocks = nn.ModuleList(DecBlock(hp, res, mixin, n) for res, mixin in hp.dec_layers)
        resolutions = sorted(set(hp.layer_resolutions))
        self.bias_xs = nn.ParameterList(
            nn.Parameter(torch.zeros(1, hp.width_at(r), r, r)) for r in resolutions if r <= hp.no_bias_above
        )
        self.out_net = make_head(hp)
        self.gain = nn.Parameter(torch.ones(1, hp.width, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, hp.width, 1, 1))
        # Row num_classes is the null label of classifier-free guidance.
        self.class_embed = nn.Embedding(hp.num_classes + 1, hp.class_dim) if hp.conditional else None

    def embed(self, labels: torch.Tensor | None) -> torch.Tensor | None:
        """Class labels (n,) with the null label already mapped to num_classes -> (n, class_dim)."""
        if self.class_embed is None:
            return None
        return self.class_embed(labels)

    def top_down(
        self,
        n: int,
        *,
        activations: dict[int, torch.Tensor] | None = None,
        posterior_layers: Sequence[int] | None = None,
        latents: Sequence[torch.Tensor] = (),
        latent_layers: Sequence[int] | None = None,
        noise: Sequence[torch.Tensor] | None = None,
        log_temperature: torch.Tensor | None = None,
        cond: torch.Tensor | None = None,
        guidance: Guidance | None = None,
        keep_posterior: bool = False,
    ) -> TopDown:
        """Run the decoder once for a batch of n images.

        Layer i of image b takes its z, in this order of precedence, from `latents[i]` when
        i < latent_layers[b] (given; default: every image takes all of `latents`), from the
        posterior when i < posterior_layers[b] (needs encoder `activations`), else from the
        (possibly guided) prior with its std times exp(log_temperature[b, i]). `noise[i]`
        (n, Z, r, r) holds the standard normal draws; without it they come from the global RNG.
        """
        ref = self.gain
        ks = list(posterior_layers) if posterior_layers is not None else [0] * n
        k_max, k_min = max(ks, default=0), min(ks, default=0)
        if k_max > 0 and activations is None:
            raise ValueError("posterior layers need encoder activations")
        k_dev = torch.tensor(ks, device=ref.device).view(n, 1, 1, 1) if k_max != k_min else None
        given = list(latent_layers) if latent_layers is not None else [len(latents)] * n
        g_max, g_min = max(given, default=0), min(given, default=0)
        if g_max > len(latents):
            raise ValueError(f"latent_layers asks for {g_max} given layers but {len(latents)} were passed")
        g_dev = torch.tensor(given, device=ref.device).view(n, 1, 1, 1) if g_max != g_min else None
        g = guidance
        n_g = 0 if g is None else g.rows.numel()
        xs = {b.shape[2]: b.expand(n, -1, -1, -1) for b in self.bias_xs}
        xs_u = {b.shape[2]: b.expand(n_g, -1, -1, -1) for b in self.bias_xs} if g is not None else None
        out = TopDown(px_z=ref)

        for i, block in enumerate(self.dec_blocks):
            x = block.stream_input(xs, n, ref)
            if g is not None:  # conditional and unconditional streams share each conv call
                x_u = block.stream_input(xs_u, n_g, ref)
                feats = block.prior(torch.cat([x, x_u]), torch.cat([cond, g.null_cond]))
                feats, feats_u = feats[:n], feats[n:]
            else:
                feats = block.prior(x, cond)
            pm, pv, xpp = block.split_prior(feats)
            use_post = i < k_max
            if use_post:
                acts = activations[block.base]
                qm, qv = block.enc(torch.cat([x, acts], dim=1), cond).chunk(2, dim=1)
            x = _add(x, xpp)

            kl, z = None, None
            if i >= g_min:  # some image draws this layer rather than taking a given z
                eps = noise[i] if noise is not None else None
                if i >= k_min:  # some image samples this layer from the prior
                    pm_s, pv_s = pm, pv
                    if g is not None:
                        pu_m, pu_v, _ = block.split_prior(feats_u)
                        pm_s, pv_s = _guided_prior(pm, pv, pu_m, pu_v, g)
                    if log_temperature is not None:
                        pv_s = pv_s + log_temperature[:, i].view(n, 1, 1, 1)
                    if eps is None:
                        eps = torch.randn_like(pm, dtype=torch.float32)
                    z = torch.exp(pv_s) * eps + pm_s
                if use_post:
                    if eps is None:
                        eps = torch.randn_like(qm, dtype=torch.float32)
                    z_q = torch.exp(qv) * eps + qm
                    kl = gaussian_kl(qm.float(), pm.float(), qv.float(), pv.float()).sum(dim=(1, 2, 3))
                    if z is None:  # every image takes this layer from its posterior
                        z = z_q
                    else:
                        in_post = k_dev > i  # (n, 1, 1, 1)
                        z = torch.where(in_post, z_q, z)
                        kl = kl * in_post.view(n)
            if i < g_max:
                z_given = latents[i].to(pm.dtype).expand(n, -1, -1, -1)
                z = z_given if z is None else torch.where(g_dev > i, z_given, z)
            if keep_posterior:
                out.z.append(z)
                if use_post:
                    out.q_mean.append(qm)
                    out.q_logstd.append(qv)
            out.kl.append(kl if kl is not None else pm.new_zeros(n, dtype=torch.float32))

            zp = block.z_proj(z)
            if g is not None:
                x_u = x_u + feats_u[:, 2 * block.zdim :] + zp.index_select(0, g.rows)
                both = block.resnet(torch.cat([_add(x, zp), x_u]), torch.cat([cond, g.null_cond]))
                xs[block.base], xs_u[block.base] = both[:n], both[n:]
            else:
                xs[block.base] = block.resnet(_add(x, zp), cond)

        out.px_z = xs[self.hp.image_size] * self.gain + self.bias
        return out
