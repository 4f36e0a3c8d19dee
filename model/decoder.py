"""Top-down decoder: one stochastic block per latent layer (openai/vdvae `Decoder`/`DecBlock`).

A single loop, `Decoder.top_down`, serves every use (model.topdown): the posterior pass, prior
sampling, decoding given latents, partial reconstruction and classifier-free guidance (a second,
unconditional stream for the guided images, fed the same z), in one pass or in pieces.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .attention import Attention
from .blocks import Block, add_to_stream, conv, scale_init
from .guidance import Guidance, guided_step, prior_features
from .heads import make_head
from .hparams import HParams
from .topdown import LayerSources, Streams, TopDown, layer_z


class DecBlock(nn.Module):
    """Posterior head `enc`, prior head `prior` (mean, log-std and a residual `xpp`), `z_proj`, `resnet`,
    and optionally an attention block `attn` after the resnet."""

    def __init__(
        self, hp: HParams, res: int, mixin: int | None, n_blocks: int, attention: bool = False
    ) -> None:
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
        # Registered last and only when configured: without attention the keys are the official ones.
        self.attn = Attention(w) if attention else None

    def shared(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """What every stream goes through after its z is added: the resnet, then the attention block."""
        x = self.resnet(x, cond)
        return x if self.attn is None else self.attn(x)

    def stream_input(self, xs: dict[int, torch.Tensor], n: int, like: torch.Tensor) -> torch.Tensor:
        """The stream at this block's resolution (zeros if none yet) plus the up-sampled mixin."""
        x = xs.get(self.base)
        if x is None:
            x = like.new_zeros(n, self.width, self.base, self.base)
        if self.mixin is not None:
            low = xs[self.mixin][:, : self.width]  # a wider low-resolution stream is sliced
            x = x + F.interpolate(low, scale_factor=self.base // self.mixin)  # nearest neighbour
        return x

    def split_prior(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(n, 2Z + w, r, r) -> prior mean, prior log-std, residual added to the stream."""
        z = self.zdim
        return feats[:, :z], feats[:, z : 2 * z], feats[:, 2 * z :]


class Decoder(nn.Module):
    def __init__(self, hp: HParams) -> None:
        super().__init__()
        self.hp = hp
        n = hp.num_layers
        self.dec_blocks = nn.ModuleList(
            DecBlock(hp, res, mixin, n, attention=i in hp.dec_attention)
            for i, (res, mixin) in enumerate(hp.dec_layers)
        )
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
        posterior_cond: torch.Tensor | None = None,
        guidance: Guidance | None = None,
        keep_posterior: bool = False,
        low_res: dict[int, torch.Tensor] | None = None,
        start: Streams | None = None,
        stop: int | None = None,
    ) -> TopDown:
        """Run the decoder once for a batch of n images.

        Layer i of image b takes its z, in this order of precedence, from `latents[i]` when
        i < latent_layers[b] (given; default: every image takes all of `latents`), from the
        posterior when i < posterior_layers[b] (needs encoder `activations`), else from the
        (possibly guided) prior with its std times exp(log_temperature[b, i]). `noise[i]`
        (n, Z, r, r) holds the standard normal draws; without it they come from the global RNG.
        `cond` conditions every block; `posterior_cond`, when given, replaces it in the posterior
        heads (training that drops the generator's label keeps the encoder's).
        `low_res` (super-resolution models): features (n, w_r, r, r) added to the initial state of
        resolution r, of both streams under guidance.

        `stop` ends the pass before layer `stop` (px_z is then None) and `start` resumes one from
        the streams another call stopped at, with the same arguments: the pieces compute exactly
        what one call does (`low_res` only enters the initial state, so a resumed call may omit it).
        `start` itself is left unchanged, so several calls can branch off it.
        """
        ref = self.gain
        src = LayerSources.plan(n, posterior_layers, latent_layers, len(latents), ref.device)
        if src.posterior_max > 0 and activations is None:
            raise ValueError("posterior layers need encoder activations")
        g = guidance
        n_g = 0 if g is None else g.rows.numel()
        start = self._start(n, start, low_res, g)
        xs, xs_u = start.xs, start.xs_u
        stop = len(self.dec_blocks) if stop is None else stop
        out = TopDown(px_z=None, streams=Streams(stop, xs, xs_u))

        for i in range(start.layer, stop):
            block = self.dec_blocks[i]
            x = block.stream_input(xs, n, ref)
            x_u = block.stream_input(xs_u, n_g, ref) if g is not None else None
            feats, feats_u = prior_features(block, x, x_u, cond, g)
            pm, pv, xpp = block.split_prior(feats)
            prior_u = block.split_prior(feats_u)[:2] if g is not None else None
            q = None
            if src.from_posterior(i):  # before the in-place add below: the posterior sees x
                q_cond = cond if posterior_cond is None else posterior_cond
                q = block.enc(torch.cat([x, activations[block.base]], dim=1), q_cond).chunk(2, dim=1)
            x = add_to_stream(x, xpp)
            z, kl = layer_z(i, src, (pm, pv), prior_u, q, latents, noise, log_temperature, g)
            if keep_posterior:
                out.keep(z, (pm, pv), q)
            out.kl.append(kl)
            xs[block.base], x_u = guided_step(block, x, x_u, feats_u, block.z_proj(z), cond, g)
            if g is not None:
                xs_u[block.base] = x_u

        if stop == len(self.dec_blocks):
            out.px_z = xs[self.hp.image_size] * self.gain + self.bias
        return out

    def _start(
        self,
        n: int,
        start: Streams | None,
        low_res: dict[int, torch.Tensor] | None,
        g: Guidance | None,
    ) -> Streams:
        """Where a pass starts: a copy of `start` when it resumes one, else layer 0 with the initial
        streams of the n images and, under guidance, of the guided rows' unconditional stream."""
        if start is not None:
            return start.copy()
        xs_u = {}
        if g is not None:
            xs_u = self._initial_streams(
                g.rows.numel(), {r: f.index_select(0, g.rows) for r, f in (low_res or {}).items()}
            )
        return Streams(0, self._initial_streams(n, low_res), xs_u)

    def _initial_streams(
        self, n: int, low_res: dict[int, torch.Tensor] | None = None
    ) -> dict[int, torch.Tensor]:
        """The learned initial state (bias_xs) of each resolution that has one, for n images, plus
        the low-resolution features where given (new tensors: the loop may add to them in place)."""
        xs = {b.shape[2]: b.expand(n, -1, -1, -1) for b in self.bias_xs}
        for r, f in (low_res or {}).items():
            xs[r] = xs[r] + f if r in xs else f
        return xs
