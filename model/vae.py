"""The Very Deep VAE: the official model plus class conditioning, guidance and a user-level API.

Two layers of calls:
  - the contract of conformance/CONTRACT.md, on preprocessed tensors with optional explicit noise:
    `preprocess`, `elbo`, `encode`, `decode`, `params_to_images`;
  - user-level calls on uint8 images with per-image seeds and parameters, run under
    inference_mode (and autocast where configured): `sample`, `reconstruct`, `encode` (given uint8).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .decoder import Decoder, Guidance, TopDown
from .encoder import Encoder
from .hparams import HParams
from .noise import NoiseSource, seed_list

LN2 = math.log(2.0)
Temperature = float | Sequence[float] | torch.Tensor
GuidanceSpec = float | tuple[float, float] | torch.Tensor | None


@dataclass
class Encoding:
    """Posterior of a batch: behaves as the list of z (one (n, Z, r, r) tensor per layer)."""

    z: list[torch.Tensor]
    mean: list[torch.Tensor]  # posterior means, per layer
    std: list[torch.Tensor]  # posterior standard deviations, per layer
    kl: torch.Tensor  # (n, L) nats per layer
    distortion: torch.Tensor | None  # (n,) nats/dim, when the 8-bit target was known
    dims: int  # H * W * C

    def __len__(self) -> int:
        return len(self.z)

    def __iter__(self):
        return iter(self.z)

    def __getitem__(self, i):
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
    def elbo(self) -> torch.Tensor | None:
        """(n,) negative ELBO in nats per dim (None without a target)."""
        return None if self.distortion is None else self.distortion + self.rate

    @property
    def bits_per_dim(self) -> torch.Tensor | None:
        return None if self.distortion is None else self.elbo / LN2


@dataclass
class Reconstruction:
    images: torch.Tensor  # (n, H, W, C) uint8
    bits: torch.Tensor  # (n,) bits of KL taken from the image's posterior (the bits it used)
    seeds: list[int]


class VDVAE(nn.Module):
    def __init__(self, hp: HParams) -> None:
        super().__init__()
        self.hp = hp
        self.encoder = Encoder(hp)
        self.decoder = Decoder(hp)
        # Inference settings (model/inference.py): autocast dtype on CUDA, or None.
        self.amp_dtype: torch.dtype | None = None
        # Where the weights came from (config.json's provenance), set by load_model.
        self.provenance: dict = {}

    @property
    def device(self) -> torch.device:
        return self.decoder.gain.device

    @property
    def head(self) -> nn.Module:
        return self.decoder.out_net

    # ---- inputs ------------------------------------------------------------------------------

    def preprocess(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images (n, H, W, C) -> (encoder input, loss target in [-1, 1]), float32 NHWC."""
        self._check_images(x)
        p = self.hp.preprocessing
        x = x.to(self.device)
        inp = x.float() / 255.0 if p.unit_input else x.float()
        target = torch.floor(inp / 8.0) * 8.0 if p.low_bit else inp
        shift = torch.tensor(p.shift, dtype=torch.float32, device=x.device)
        scale = torch.tensor(p.scale, dtype=torch.float32, device=x.device)
        shift_loss = torch.tensor(p.shift_loss, dtype=torch.float32, device=x.device)
        scale_loss = torch.tensor(p.scale_loss, dtype=torch.float32, device=x.device)
        return (inp + shift) * scale, (target + shift_loss) * scale_loss

    def _check_images(self, x: torch.Tensor) -> None:
        hp = self.hp
        expected = (hp.image_size, hp.image_size, hp.image_channels)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"expected images of shape (n, {', '.join(map(str, expected))}), got {tuple(x.shape)}"
            )
        if x.dtype != torch.uint8:
            raise ValueError(f"expected uint8 images, got {x.dtype}")

    def _labels(self, labels, n: int) -> torch.Tensor | None:
        """Labels -> (n,) embedding rows on the device; None or -1 is the null label (row num_classes)."""
        hp = self.hp
        if not hp.conditional:
            if labels is not None:
                raise ValueError("this model is unconditional: it takes no class labels")
            return None
        if labels is None:
            t = torch.full((n,), hp.num_classes, dtype=torch.long)
        else:
            if isinstance(labels, (list, tuple)):
                labels = [-1 if y is None else y for y in labels]
            t = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
            if t.numel() == 1 and n != 1:
                t = t.expand(n)
            if t.numel() != n:
                raise ValueError(f"got {t.numel()} labels for {n} images")
            bad = (t < -1) | (t >= hp.num_classes)
            if bad.any():
                raise ValueError(
                    f"label {int(t[bad][0])} out of range: classes are 0..{hp.num_classes - 1} "
                    "(-1 or None for unconditional)"
                )
            t = torch.where(t < 0, torch.full_like(t, hp.num_classes), t)
        return t.to(self.device)

    def _log_temperature(self, temperature: Temperature | None, n: int) -> torch.Tensor | None:
        """float, L floats (one per layer) or an (n, L) tensor -> (n, L) log-temperatures, or None for 1."""
        L = self.hp.num_layers
        if temperature is None:
            return None
        if isinstance(temperature, (int, float)) and not isinstance(temperature, bool):
            if temperature == 1.0:
                return None  # exactly the untempered prior
            t = torch.full((n, L), float(temperature))
        else:
            t = torch.as_tensor(temperature, dtype=torch.float32)
            if t.dim() == 0:
                t = t.expand(n, L)
            elif t.dim() == 1:
                if t.numel() != L:
                    raise ValueError(
                        f"temperature has {t.numel()} values but the model has {L} latent layers"
                    )
                t = t.expand(n, L)
            elif tuple(t.shape) != (n, L):
                raise ValueError(f"per-image temperature must have shape ({n}, {L}), got {tuple(t.shape)}")
        if not torch.isfinite(t).all() or (t < 0).any():
            raise ValueError("temperature must be finite and >= 0")
        return torch.log(t.float()).to(self.device)

    def _guidance(self, guidance: GuidanceSpec, labels: torch.Tensor | None, n: int) -> Guidance | None:
        """(w_mean, w_var) for all images, or an (n, 2) tensor; 0 is plain conditional sampling."""
        if guidance is None:
            return None
        if not self.hp.conditional:
            raise ValueError("guidance needs a class-conditional model")
        w = torch.as_tensor(guidance, dtype=torch.float32)
        if w.dim() == 0:
            w = w.repeat(2)
        w = w.expand(n, 2) if w.dim() == 1 else w
        if tuple(w.shape) != (n, 2):
            raise ValueError(f"guidance must be (w_mean, w_var) or shape ({n}, 2), got {tuple(w.shape)}")
        if not torch.isfinite(w).all():
            raise ValueError("guidance weights must be finite")
        # Only images with a real label and a non-zero weight need the unconditional stream.
        active = ((w != 0).any(dim=1) & (labels.cpu() != self.hp.num_classes)).nonzero().view(-1)
        if active.numel() == 0:
            return None
        dev = self.device
        rows = active.to(dev)
        null = torch.full((rows.numel(),), self.hp.num_classes, dtype=torch.long, device=dev)
        return Guidance(
            rows=rows,
            w_mean=w[active, 0].view(-1, 1, 1, 1).to(dev),
            w_var=w[active, 1].view(-1, 1, 1, 1).to(dev),
            null_cond=self.decoder.embed(null),
        )

    def latent_shapes(self) -> list[tuple[int, int, int]]:
        """Per-image shape (Z, r, r) of each latent layer, top-down."""
        return [(self.hp.zdim, r, r) for r in self.hp.layer_resolutions]

    def _check_latents(self, latents: Sequence[torch.Tensor], n: int) -> list[torch.Tensor]:
        shapes = self.latent_shapes()
        if len(latents) > len(shapes):
            raise ValueError(f"got {len(latents)} latent layers but the model has {len(shapes)}")
        out = []
        for i, (z, shape) in enumerate(zip(latents, shapes)):
            z = torch.as_tensor(z)
            if z.dim() != 4 or tuple(z.shape[1:]) != shape or z.shape[0] not in (1, n):
                raise ValueError(
                    f"latent layer {i}: expected shape ({n} or 1, {', '.join(map(str, shape))}), "
                    f"got {tuple(z.shape)}"
                )
            if not torch.isfinite(z).all():
                raise ValueError(f"latent layer {i} has non-finite values")
            out.append(z.to(self.device, torch.float32))
        return out

    # ---- the contract --------------------------------------------------------------------------

    def elbo(
        self, x_in: torch.Tensor, x_target: torch.Tensor, noise=None, labels=None
    ) -> dict[str, torch.Tensor]:
        """Negative ELBO per example in nats/dim: elbo = distortion + rate; kl (n, L) nats per layer.

        `recon_loss` is the training distortion (the NLL for DMoL, the sigma_q KL for the Gaussian
        head); `elbo`/`distortion` are always the likelihood bound of 8-bit data.
        """
        n = x_in.shape[0]
        td = self.decoder.top_down(
            n,
            activations=self.encoder(x_in),
            posterior_layers=[self.hp.num_layers] * n,
            noise=noise,
            cond=self.decoder.embed(self._labels(labels, n)),
        )
        params = self.head(td.px_z)
        dims = math.prod(x_in.shape[1:])
        kl = torch.stack(td.kl, dim=1)  # (n, L)
        distortion = self.head.nll(params, x_target)
        rate = kl.sum(dim=1) / dims
        recon = distortion if self.hp.output_head == "dmol" else self.head.loss(params, x_target)
        return {
            "elbo": distortion + rate,
            "distortion": distortion,
            "rate": rate,
            "kl": kl,
            "recon_loss": recon,
        }

    forward = elbo  # DistributedDataParallel wraps forward: training calls the model directly

    def encode(self, x: torch.Tensor, noise=None, *, labels=None, seeds=None) -> Encoding:
        """Posterior samples, means, stds and per-layer KL of a batch.

        x: uint8 images (n, H, W, C), or an already preprocessed float encoder input (then no
        distortion is reported). Noise: explicit per-layer draws, or per-image `seeds`, or the
        global RNG.
        """
        with self._inference():
            if x.dtype == torch.uint8:
                x_in, x_target = self.preprocess(x)
            else:
                x_in, x_target = x.to(self.device), None
            n = x_in.shape[0]
            if noise is None and seeds is not None:
                noise = self._noise(seeds, n).normal(self.latent_shapes(), self.device)
            cond = self.decoder.embed(self._labels(labels, n))
            td = self.decoder.top_down(
                n,
                activations=self.encoder(x_in),
                posterior_layers=[self.hp.num_layers] * n,
                noise=noise,
                cond=cond,
                keep_posterior=True,
            )
            distortion = None
            if x_target is not None:
                distortion = self.head.nll(self.head(td.px_z), x_target)
            return Encoding(
                z=[z.float() for z in td.z],
                mean=[m.float() for m in td.q_mean],
                std=[s.float().exp() for s in td.q_logstd],
                kl=torch.stack(td.kl, dim=1),
                distortion=distortion,
                dims=self.hp.image_dims,
            )

    def decode(
        self,
        latents: Sequence[torch.Tensor] = (),
        n: int | None = None,
        temperature: Temperature = 1.0,
        noise=None,
        *,
        labels=None,
        guidance: GuidanceSpec = None,
        seeds=None,
        latent_layers: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Output-layer parameters (n, H, W, out) NHWC: given latents for the top len(latents) layers
        (or the top latent_layers[b] for image b), the rest from the prior with std times the
        temperature (float, or one per layer)."""
        with self._inference():
            n = n if n is not None else (latents[0].shape[0] if len(latents) else 1)
            if noise is None and seeds is not None:
                noise = self._noise(seeds, n).normal(self.latent_shapes(), self.device)
            td = self._decode(latents, latent_layers, n, temperature, noise, labels, guidance)
            return self.head(td.px_z)

    def _noise(self, seeds, n: int) -> NoiseSource:
        return seeds if isinstance(seeds, NoiseSource) else NoiseSource(seed_list(seeds, n))

    def _decode(self, latents, latent_layers, n, temperature, noise, labels, guidance) -> TopDown:
        latents = self._check_latents(latents, n)
        if latent_layers is not None:
            latent_layers = [int(k) for k in latent_layers]
            if len(latent_layers) != n or any(not 0 <= k <= len(latents) for k in latent_layers):
                raise ValueError(f"latent_layers must give one count in 0..{len(latents)} per image")
        y = self._labels(labels, n)
        return self.decoder.top_down(
            n,
            latents=latents,
            latent_layers=latent_layers,
            noise=noise,
            log_temperature=self._log_temperature(temperature, n),
            cond=self.decoder.embed(y),
            guidance=self._guidance(guidance, y, n),
        )

    def params_to_images(self, params: torch.Tensor, noise=None, *, seeds=None) -> torch.Tensor:
        """Output-layer parameters -> uint8 images (n, H, W, C).

        DMoL draws with `noise` = (u_mix, u_logistic) or from per-image `seeds` (a NoiseSource or
        seeds); the Gaussian head shows its mean and needs no noise.
        """
        with self._inference():
            n, h = params.shape[0], params.shape[1]
            shapes = self.head.noise_shapes(n, h)
            if shapes and noise is None:
                if seeds is not None:
                    noise = self._noise(seeds, n).uniform([s[1:] for s in shapes], params.device)
                else:
                    noise = [torch.rand(s, device=params.device) * (1.0 - 2e-5) + 1e-5 for s in shapes]
            return self.head.to_uint8(self.head.sample(params, noise))

    # ---- user level ----------------------------------------------------------------------------

    def sample(
        self,
        n: int,
        temperature: Temperature = 1.0,
        labels=None,
        guidance: GuidanceSpec = None,
        seeds: int | Sequence[int] | None = None,
        latents: Sequence[torch.Tensor] = (),
        latent_layers: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """n images (uint8, NHWC) from the prior, optionally class-conditional and guided.

        labels: one int for all, or one per image (None/-1: unconditional). guidance:
        (w_mean, w_var), 0 = plain conditional sampling. seeds: image i uses seeds[i] (an int s
        means s + i); the same seed and parameters give the same image in any batch. latents:
        fixed z for the top layers (decoding from given latents); latent_layers: how many of them
        each image takes (default all), so requests of different depths share one pass.
        """
        with self._inference():
            src = self._noise(seeds, n)
            noise = src.normal(self.latent_shapes(), self.device)
            td = self._decode(latents, latent_layers, n, temperature, noise, labels, guidance)
            return self.params_to_images(self.head(td.px_z), seeds=src)

    def reconstruct(
        self,
        x: torch.Tensor,
        layers: int | Sequence[int],
        temperature: Temperature = 1.0,
        seeds: int | Sequence[int] | None = None,
        labels=None,
    ) -> Reconstruction:
        """Partial posterior reconstruction: the top `layers` latent layers from the image's
        posterior, the rest from the prior (temperature applies to those). layers = L gives a full
        reconstruction, 0 an unconditional sample. One top-down pass."""
        with self._inference():
            x_in, _ = self.preprocess(x)
            n, L = x_in.shape[0], self.hp.num_layers
            ks = [int(layers)] * n if isinstance(layers, int) else [int(k) for k in layers]
            if len(ks) != n or any(not 0 <= k <= L for k in ks):
                raise ValueError(f"layers must be in 0..{L}, one value or one per image")
            src = self._noise(seeds, n)
            y = self._labels(labels, n)
            td = self.decoder.top_down(
                n,
                activations=self.encoder(x_in) if max(ks) > 0 else None,
                posterior_layers=ks,
                noise=src.normal(self.latent_shapes(), self.device),
                log_temperature=self._log_temperature(temperature, n),
                cond=self.decoder.embed(y),
            )
            images = self.params_to_images(self.head(td.px_z), seeds=src)
            bits = torch.stack(td.kl, dim=1).sum(dim=1) / LN2
            return Reconstruction(images=images, bits=bits, seeds=src.seeds)

    # ---- execution context -----------------------------------------------------------------------

    def _inference(self):
        """inference_mode, plus autocast when an amp dtype is set on a CUDA model."""
        if torch.is_grad_enabled() and self.training:
            return contextlib.nullcontext()  # called inside training code: leave autograd alone
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        if self.amp_dtype is not None and self.device.type == "cuda":
            stack.enter_context(torch.autocast("cuda", dtype=self.amp_dtype))
        return stack
