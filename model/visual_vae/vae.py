"""The hierarchical VAE of Luhman & Luhman 2022, "Optimizing Hierarchical Image VAEs for Sample
Quality" (tcl9876/visual-vae), with their state-dict layout and their numbers.

Its module tree is theirs (`encoder`, `layer_list`, `output_blocks`, `outproj`, and `initial_x` or
the low-res U-Net `process_lowres_image`), so their released `*_ema_weights.pt` load with
strict=True. Every call is model.hierarchical's, shared with the VDVAE family: this module gives
the hooks (preprocessing, the encoder, the top-down pass, the low-resolution input).

Where their code is numerically fragile the same values come from a stable form: the smoothed
variance (model.visual_vae.decoder.smoothed_log_std), and the noise on a super-resolution input is
added to a copy, never in place to the caller's tensor.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from ..blocks import add_to_stream
from ..guidance import Guidance, guided_step, prior_features
from ..heads import GaussianOutput
from ..hierarchical import HierarchicalVAE
from ..lowres import downsample, to_signed_unit
from ..noise import NoiseSource
from ..options import LowRes, NoiseLevelSpec, low_res_noise_levels
from ..topdown import LayerSources, Streams, TopDown, layer_z
from .blocks import ResBlock, conv
from .config import VisualVAEConfig, evaluate_defaults
from .decoder import DecoderLevel
from .encoder import Encoder, LowResUnet


class VisualVAE(HierarchicalVAE):
    family: ClassVar[str] = "visual-vae"
    source: ClassVar[str] = "tcl9876/visual-vae"

    def __init__(self, cfg: VisualVAEConfig) -> None:
        super().__init__()
        self.hp = cfg
        self.encoder = Encoder(cfg)
        if cfg.is_superres:
            self.process_lowres_image = LowResUnet(cfg.widths[-1], cfg.superres_nlayers, cfg.num_classes)
        else:
            r = cfg.resolutions[-1]
            self.initial_x = nn.Parameter(torch.zeros(1, cfg.widths[-1], r, r))
        # Lowest resolution first: the order of the top-down pass and of their state dict.
        self.layer_list = nn.ModuleList(DecoderLevel(cfg, i) for i in reversed(range(cfg.levels)))
        w_scale = 1 / math.sqrt(sum(cfg.nlayers))
        self.output_blocks = nn.ModuleList(
            ResBlock(cfg.c, cfg.c, w_scale=w_scale) for _ in range(cfg.num_final_blocks)
        )
        self.outproj = conv(cfg.c, 6, 1)
        # Parameter-free: the mean and log-variance come out of outproj; 8-bit images truncate the
        # mean as their evaluate.py does.
        self.head = GaussianOutput(3, cfg.sigma_q, truncate=True)
        # One entry per latent layer, top-down: the layer and what follows it in its level.
        self._steps = [step for level in self.layer_list for step in level.steps()]
        # What sample / reconstruct use for options a caller leaves out: as their evaluate.py samples.
        self.sampling = evaluate_defaults(cfg)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> VisualVAE:
        """A model from their config as a dict ({"model": {...}, "training": {...}, ...}; see
        VisualVAEConfig.from_config)."""
        return cls(VisualVAEConfig.from_config(config))

    # ---- hooks of model.hierarchical ---------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.outproj.weight.device

    def preprocess(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images (n, H, W, 3) -> (x / 127.5 - 1, the same): their loss target is the input."""
        self._check_images(x)
        x_in = to_signed_unit(x.to(self.device))
        return x_in, x_in

    def embed(self, labels: torch.Tensor | None) -> torch.Tensor | None:
        return labels  # every block embeds the label itself

    def activations(self, x_in: torch.Tensor, cond: torch.Tensor | None) -> list[torch.Tensor]:
        return self.encoder(x_in, cond)

    def residual_blocks(self) -> Iterator[nn.Module]:
        return (m for m in self.modules() if isinstance(m, ResBlock))

    def low_res_features(
        self,
        low_res: LowRes,
        noise_level: NoiseLevelSpec,
        n: int,
        src: NoiseSource | None = None,
        image: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """A super-resolution model's input (n, 3, s, s): `low_res` in model space, plus Gaussian
        noise of std `noise_level` (default: the model's c_aug; one, or one per image) from each
        image's conditioning stream of `src`, else from the global RNG (training).

        low_res: uint8 (n, s, s, 3) (x / 127.5 - 1), or float (n, s, s, 3) already in model space
        (a base model's raw mean, as their cascade feeds it); without it, uint8 `image` average-pooled.
        """
        cfg = self.hp
        if not cfg.is_superres:
            self._refuse_low_res(low_res, noise_level)
            return None
        s = cfg.low_res
        if low_res is None:
            if image is None:
                raise ValueError(
                    f"this super-resolution model needs low_res: images of shape ({n}, {s}, {s}, 3), "
                    "uint8 or floats in [-1, 1]"
                )
            low_res = downsample(image, s)
        low_res = torch.as_tensor(low_res)
        if low_res.dim() != 4 or tuple(low_res.shape) != (n, s, s, 3):
            raise ValueError(
                f"low_res: expected images of shape ({n}, {s}, {s}, 3) (this model upscales {s}x{s} "
                f"to {cfg.image_size}x{cfg.image_size}), got {tuple(low_res.shape)}"
            )
        if low_res.dtype == torch.uint8:
            x = to_signed_unit(low_res.to(self.device))
        elif low_res.is_floating_point():
            x = low_res.to(self.device, torch.float32)
            if not torch.isfinite(x).all():
                raise ValueError("low_res has non-finite values")
        else:
            raise ValueError(f"low_res: expected uint8 images or floats in model space, got {low_res.dtype}")
        sigma = low_res_noise_levels(noise_level, cfg.low_res_noise, n, self.device)
        eps = src.conditioning([(s, s, 3)], self.device)[0] if src is not None else torch.randn_like(x)
        return (x + sigma * eps).permute(0, 3, 1, 2)  # (n, 3, s, s)

    # ---- the top-down pass ---------------------------------------------------------------------

    def top_down(
        self,
        n: int,
        *,
        activations: Sequence[torch.Tensor] | None = None,
        posterior_layers: Sequence[int] | None = None,
        latents: Sequence[torch.Tensor] = (),
        latent_layers: Sequence[int] | None = None,
        noise: Sequence[torch.Tensor] | None = None,
        log_temperature: torch.Tensor | None = None,
        cond: torch.Tensor | None = None,
        posterior_cond: torch.Tensor | None = None,
        guidance: Guidance | None = None,
        keep_posterior: bool = False,
        low_res: torch.Tensor | None = None,
        start: Streams | None = None,
        stop: int | None = None,
    ) -> TopDown:
        """Run the decoder once for a batch of n images (the arguments as model.vae's decoder takes
        them; model.topdown). `cond`: the generator's labels (prior, shared blocks, U-Net);
        `posterior_cond`: the encoder's, when they differ. `low_res`: a super-resolution model's
        noisy input (n, 3, s, s) (low_res_features), run through the U-Net for the initial state.
        px_z of a full pass is the output projection (n, 6, H, W): means, then log-variances."""
        src = LayerSources.plan(n, posterior_layers, latent_layers, len(latents), self.device)
        if src.posterior_max > 0 and activations is None:
            raise ValueError("posterior layers need encoder activations")
        g = guidance
        start = self._start(n, start, low_res, cond, g)
        (x,) = start.xs.values()
        x_u = next(iter(start.xs_u.values())) if g is not None else None
        stop = self.hp.num_layers if stop is None else stop
        q_cond = cond if posterior_cond is None else posterior_cond
        out = TopDown(px_z=None, streams=Streams(stop, {}, {}))

        for i in range(start.layer, stop):
            layer, tail = self._steps[i]
            feats, feats_u = prior_features(layer, x, x_u, cond, g)
            pm, pv, h = layer.split_prior(feats)
            prior_u = layer.split_prior(feats_u)[:2] if g is not None else None
            q = None
            if src.from_posterior(i):  # before the in-place add below: the posterior sees x
                q = layer.posterior(x, activations[layer.level], q_cond)
            x = add_to_stream(x, h)
            z, kl = layer_z(i, src, (pm, pv), prior_u, q, latents, noise, log_temperature, g)
            if keep_posterior:
                out.keep(z, (pm, pv), q)
            out.kl.append(kl)
            x, x_u = guided_step(layer, x, x_u, feats_u, layer.zproj(z), cond, g)
            for module in tail:  # attention, up-sampling: one call for both streams
                if x_u is None:
                    x = module(x)
                else:
                    both = module(torch.cat([x, x_u]))
                    x, x_u = both[:n], both[n:]

        out.streams = Streams(stop, {x.shape[-1]: x}, {} if x_u is None else {x_u.shape[-1]: x_u})
        if stop == self.hp.num_layers:
            for block in self.output_blocks:
                x = block(x)
            out.px_z = self.outproj(x)  # (n, 6, H, W)
        return out

    def _start(
        self,
        n: int,
        start: Streams | None,
        low_res: torch.Tensor | None,
        cond: torch.Tensor | None,
        g: Guidance | None,
    ) -> Streams:
        """Where a pass starts: a copy of `start` when it resumes one, else layer 0 with the initial
        state of the n images (the learned initial_x, or the U-Net of the low-res input with each
        image's label) and, under guidance, of the guided rows' unconditional stream."""
        if start is not None:
            return start.copy()
        if not self.hp.is_superres:
            if low_res is not None:
                raise ValueError("low_res is for super-resolution models; this is not one")
            x = self.initial_x.expand(n, -1, -1, -1)
            x_u = self.initial_x.expand(g.rows.numel(), -1, -1, -1) if g is not None else None
        else:
            if low_res is None:
                raise ValueError("this super-resolution model needs its low-resolution input")
            if g is None:
                x, x_u = self.process_lowres_image(low_res, cond), None
            else:  # the guided rows' unconditional stream starts from the U-Net with the null label
                both = self.process_lowres_image(
                    torch.cat([low_res, low_res.index_select(0, g.rows)]), torch.cat([cond, g.null_cond])
                )
                x, x_u = both[:n], both[n:]
        r = x.shape[-1]
        return Streams(0, {r: x}, {} if x_u is None else {r: x_u})
