"""What both model families share: the parity contract's calls and the user-level API, written
once on top of a few hooks each family defines.

Two layers of calls:
  - the parity contract (conformance/CONTRACT.md, VISUAL_VAE_CONTRACT.md), on preprocessed tensors
    with optional explicit noise (a list of standard-normal tensors, one per latent layer,
    top-down): `preprocess`, `elbo`, `encode`, `decode`, `params_to_images`;
  - user-level calls on uint8 images with per-image seeds and parameters, run under
    inference_mode (and autocast where configured): `sample`, `reconstruct`, `encode` (given uint8),
    `sample_stages` (a sample resolution by resolution, with previews), `draws` and `interpolate`
    (in each latent layer's standardized prior noise; model.interpolation).
    What `sample` and `reconstruct` are not given (DEFAULT) comes from the model's sampling
    defaults (`self.sampling`, config.json's "sampling" section; model.sampling).

A family (model.vae.VDVAE, model.visual_vae.VisualVAE) provides its configuration `hp`
(model.config.ModelConfig), its output head `head`, and the hooks below: `preprocess`, `embed`,
`activations`, `top_down` (model.topdown), `low_res_features`, `residual_blocks` and `device`.
"""

from __future__ import annotations

import contextlib
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from .classes import ClassNames
from .config import ModelConfig
from .interpolation import path_draws, path_temperature, steps_t
from .likelihoods import LN2
from .noise import Draws, GivenNoise, NoiseSource, Seeds, seed_list
from .options import (
    GuidanceSpec,
    LabelSpec,
    LowRes,
    NoiseLevelSpec,
    TemperatureSpec,
    checked_latents,
    guidance_rows,
    label_rows,
    log_temperature,
)
from .outputs import Encoding, Reconstruction, Stage
from .sampling import DEFAULT
from .topdown import TopDown, resolution_stops

if TYPE_CHECKING:
    from .graphs import SampleGraphs

# Explicit standard-normal draws, one (n, Z, r, r) tensor per latent layer, top-down.
Noise = Sequence[torch.Tensor] | None


class HierarchicalVAE(nn.Module, ABC):
    """A hierarchical VAE of either family: the calls every caller (the service, the tools, the
    tests) uses, whatever the architecture underneath."""

    family: ClassVar[str]  # "vdvae" or "visual-vae": config.json's "family", /v1/models
    source: ClassVar[str]  # the code whose weights and numbers this family reproduces
    hp: ModelConfig  # the family's configuration
    head: nn.Module  # output head: params NHWC, their likelihoods, and images

    def __init__(self) -> None:
        super().__init__()
        # Inference settings (model.inference): autocast dtype on CUDA, or None.
        self.amp_dtype: torch.dtype | None = None
        # Prior sampling replayed from CUDA graphs by batch bucket (model.graphs), or None: eager.
        self.graphs: SampleGraphs | None = None
        # Where the weights came from (config.json's provenance), set by load_model.
        self.provenance: dict = {}
        # The class names of a class-conditional model (config.json's "classes"), set by load_model.
        self.classes: ClassNames | None = None

    # ---- family hooks ----------------------------------------------------------------------------

    @property
    @abstractmethod
    def device(self) -> torch.device: ...

    @abstractmethod
    def preprocess(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images (n, H, W, C) -> (encoder input, loss target), float32 NHWC."""

    @abstractmethod
    def embed(self, labels: torch.Tensor | None) -> torch.Tensor | None:
        """Label rows (n,) (the null label already num_classes) -> what the blocks take as `cond`."""

    @abstractmethod
    def activations(self, x_in: torch.Tensor, cond: torch.Tensor | None) -> Any:
        """The encoder's activations of a preprocessed batch, as the family's top_down takes them."""

    @abstractmethod
    def top_down(self, n: int, **kwargs: Any) -> TopDown:
        """One top-down pass (model.topdown describes the arguments)."""

    @abstractmethod
    def low_res_features(
        self,
        low_res: LowRes,
        noise_level: NoiseLevelSpec,
        n: int,
        src: NoiseSource | None = None,
        image: torch.Tensor | None = None,
    ) -> Any:
        """A super-resolution model's conditioning for n images, as its top_down takes it; None for a
        plain model, which refuses a low-resolution input."""

    @abstractmethod
    def residual_blocks(self) -> Iterator[nn.Module]:
        """The modules worth compiling one by one (model.inference)."""

    # ---- shared checks ---------------------------------------------------------------------------

    def _check_images(self, x: torch.Tensor) -> None:
        hp = self.hp
        expected = (hp.image_size, hp.image_size, hp.image_channels)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"expected images of shape (n, {', '.join(map(str, expected))}), got {tuple(x.shape)}"
            )
        if x.dtype != torch.uint8:
            raise ValueError(f"expected uint8 images, got {x.dtype}")

    def _label_rows(self, labels: LabelSpec, n: int) -> torch.Tensor | None:
        return label_rows(self.hp, labels, n, self.device)

    def _refuse_low_res(self, low_res: LowRes, noise_level: NoiseLevelSpec) -> None:
        if low_res is not None or noise_level is not None:
            raise ValueError("low_res and low_res_noise are for super-resolution models; this is not one")

    def latent_shapes(self) -> list[tuple[int, int, int]]:
        """Per-image shape (Z, r, r) of each latent layer, top-down."""
        return [(self.hp.zdim, r, r) for r in self.hp.layer_resolutions]

    # ---- the contract --------------------------------------------------------------------------

    def elbo(
        self,
        x_in: torch.Tensor,
        x_target: torch.Tensor,
        noise: Noise = None,
        labels: LabelSpec = None,
        low_res: LowRes = None,
        low_res_noise: NoiseLevelSpec = None,
        prior_labels: LabelSpec = None,
    ) -> dict[str, torch.Tensor]:
        """Negative ELBO per example in nats/dim: elbo = distortion + rate; kl (n, L) nats per layer.

        `recon_loss` is the training distortion (the NLL for DMoL, the sigma_q KL for a Gaussian
        head); `elbo`/`distortion` are always the likelihood bound of 8-bit data. `prior_labels`
        (default: `labels`) are what the prior and the stream's blocks see when training drops the
        generator's label; the encoder and the posterior keep `labels`. A super-resolution model
        needs `low_res`; its noise comes from the global RNG, as training wants.
        """
        n = x_in.shape[0]
        y = self._label_rows(labels, n)
        y_gen = y if prior_labels is None else self._label_rows(prior_labels, n)
        td = self.top_down(
            n,
            activations=self.activations(x_in, self.embed(y)),
            posterior_layers=[self.hp.num_layers] * n,
            noise=noise,
            cond=self.embed(y_gen),
            posterior_cond=None if prior_labels is None else self.embed(y),
            low_res=self.low_res_features(low_res, low_res_noise, n),
        )
        params = self.head(td.px_z)
        dims = math.prod(x_in.shape[1:])
        kl = torch.stack(td.kl, dim=1)  # (n, L)
        distortion = self.head.nll(params, x_target)
        rate = kl.sum(dim=1) / dims
        return {
            "elbo": distortion + rate,
            "distortion": distortion,
            "rate": rate,
            "kl": kl,
            "recon_loss": self.head.loss(params, x_target),
        }

    def forward(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        # DistributedDataParallel wraps forward: training calls the model directly.
        return self.elbo(*args, **kwargs)

    def encode(
        self,
        x: torch.Tensor,
        noise: Noise = None,
        *,
        labels: LabelSpec = None,
        seeds: Seeds = None,
        low_res: LowRes = None,
        low_res_noise: NoiseLevelSpec = None,
    ) -> Encoding:
        """Posterior samples, means, stds and per-layer KL of a batch.

        x: uint8 images (n, H, W, C), or an already preprocessed float encoder input (then no
        distortion is reported). Noise: explicit per-layer draws, or per-image `seeds`, or the
        global RNG. A super-resolution model takes `low_res` or pools uint8 `x` (low_res_features).
        """
        with self._inference():
            image = x if x.dtype == torch.uint8 else None
            if image is not None:
                x_in, x_target = self.preprocess(x)
            else:
                x_in, x_target = x.to(self.device), None
            n = x_in.shape[0]
            src = self._noise(seeds, n) if seeds is not None else None
            if noise is None and src is not None:
                noise = src.normal(self.latent_shapes(), self.device)
            cond = self.embed(self._label_rows(labels, n))
            td = self.top_down(
                n,
                activations=self.activations(x_in, cond),
                posterior_layers=[self.hp.num_layers] * n,
                noise=noise,
                cond=cond,
                keep_posterior=True,
                low_res=self.low_res_features(low_res, low_res_noise, n, src, image),
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
                prior_mean=[m.float() for m in td.p_mean],
                prior_std=[s.float().exp() for s in td.p_logstd],
            )

    def decode(
        self,
        latents: Sequence[torch.Tensor] = (),
        n: int | None = None,
        temperature: TemperatureSpec = 1.0,
        noise: Noise = None,
        *,
        labels: LabelSpec = None,
        guidance: GuidanceSpec = None,
        seeds: Seeds = None,
        latent_layers: Sequence[int] | None = None,
        low_res: LowRes = None,
        low_res_noise: NoiseLevelSpec = None,
    ) -> torch.Tensor:
        """Output-layer parameters (n, H, W, out) NHWC: given latents for the top len(latents) layers
        (or the top latent_layers[b] for image b), the rest from the prior with std times the
        temperature (float, or one per layer)."""
        with self._inference():
            n = n if n is not None else (latents[0].shape[0] if len(latents) else 1)
            src = self._noise(seeds, n) if seeds is not None else None
            if noise is None and src is not None:
                noise = src.normal(self.latent_shapes(), self.device)
            features = self.low_res_features(low_res, low_res_noise, n, src)
            args = self._decode_args(
                latents, latent_layers, n, temperature, noise, labels, guidance, features
            )
            return self.head(self.top_down(n, **args).px_z)

    def _noise(self, seeds: Seeds, n: int) -> NoiseSource:
        return seeds if isinstance(seeds, NoiseSource) else NoiseSource(seed_list(seeds, n))

    def _decode_args(
        self,
        latents: Sequence[torch.Tensor],
        latent_layers: Sequence[int] | None,
        n: int,
        temperature: TemperatureSpec,
        noise: Noise,
        labels: LabelSpec,
        guidance: GuidanceSpec,
        low_res: Any = None,
    ) -> dict:
        """The checked keyword arguments of top_down for decoding and sampling."""
        latents = checked_latents(latents, self.latent_shapes(), n, self.device)
        if latent_layers is not None:
            latent_layers = [int(k) for k in latent_layers]
            if len(latent_layers) != n or any(not 0 <= k <= len(latents) for k in latent_layers):
                raise ValueError(f"latent_layers must give one count in 0..{len(latents)} per image")
        y = self._label_rows(labels, n)
        return dict(
            latents=latents,
            latent_layers=latent_layers,
            noise=noise,
            log_temperature=log_temperature(temperature, n, self.hp.num_layers, self.device),
            cond=self.embed(y),
            guidance=guidance_rows(self.hp, guidance, y, n, self.embed),
            low_res=low_res,
        )

    def _pixel_shapes(self) -> list[tuple[int, ...]]:
        """Per-image shapes of the output layer's uniform draws (none for a Gaussian head)."""
        return [s[1:] for s in self.head.noise_shapes(1, self.hp.image_size)]

    def params_to_images(
        self,
        params: torch.Tensor,
        noise: Sequence[torch.Tensor] | None = None,
        *,
        seeds: Seeds = None,
    ) -> torch.Tensor:
        """Output-layer parameters -> uint8 images (n, H, W, C).

        DMoL draws with `noise` = (u_mix, u_logistic) or from per-image `seeds` (a NoiseSource or
        seeds); a Gaussian head shows its mean and needs no noise.
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

    def sampling_options(
        self,
        seeds: Sequence[int],
        temperature: TemperatureSpec = DEFAULT,
        labels: LabelSpec = DEFAULT,
        guidance: GuidanceSpec = DEFAULT,
    ) -> dict:
        """{"temperature", "labels", "guidance"} for images drawn with `seeds`: what is given, and the
        model's sampling defaults for what is DEFAULT (labels: one per seed under the "seed" rule).
        The one place defaults are applied; the service calls it too."""
        return self.sampling.options(seeds, self.hp.num_classes, temperature, labels, guidance)

    def sample_params(
        self,
        n: int,
        temperature: TemperatureSpec = DEFAULT,
        labels: LabelSpec = DEFAULT,
        guidance: GuidanceSpec = DEFAULT,
        seeds: Seeds = None,
        latents: Sequence[torch.Tensor] = (),
        latent_layers: Sequence[int] | None = None,
        low_res: LowRes = None,
        low_res_noise: NoiseLevelSpec = None,
    ) -> torch.Tensor:
        """The output-layer parameters (n, H, W, out) of `sample`'s images (same arguments): what a
        cascade hands a super-resolution stage that takes the raw predicted mean."""
        with self._inference():
            src = self._noise(seeds, n)
            opts = self.sampling_options(src.seeds, temperature, labels, guidance)
            temperature, labels, guidance = opts["temperature"], opts["labels"], opts["guidance"]
            noise = src.normal(self.latent_shapes(), self.device)
            features = self.low_res_features(low_res, low_res_noise, n, src)
            if self.graphs is not None and len(latents) == 0 and latent_layers is None and features is None:
                params = self.graphs.params(n, noise, temperature, labels, guidance)
                if params is not None:
                    return params
            args = self._decode_args(
                latents, latent_layers, n, temperature, noise, labels, guidance, features
            )
            return self.head(self.top_down(n, **args).px_z)

    def sample(
        self,
        n: int,
        temperature: TemperatureSpec = DEFAULT,
        labels: LabelSpec = DEFAULT,
        guidance: GuidanceSpec = DEFAULT,
        seeds: Seeds = None,
        latents: Sequence[torch.Tensor] = (),
        latent_layers: Sequence[int] | None = None,
        low_res: LowRes = None,
        low_res_noise: NoiseLevelSpec = None,
    ) -> torch.Tensor:
        """n images (uint8, NHWC) from the prior, optionally class-conditional and guided.

        labels: one int for all, or one per image (None/-1: unconditional). guidance:
        (w_mean, w_var), 0 or None = plain conditional sampling. Left out (DEFAULT), temperature,
        labels and guidance come from `self.sampling` (see sampling_options); pass labels=None for
        the unconditional prior. seeds: image i uses seeds[i] (an int s means s + i); the same seed
        and parameters give the same image in any batch. latents: fixed z for the top layers
        (decoding from given latents); latent_layers: how many of them each image takes (default
        all), so requests of different depths share one pass.
        Super-resolution models: `low_res` (n, s, s, C) (uint8; visual-vae models also take floats
        in model space), `low_res_noise` the std of the noise added to it in [-1, 1] (default: the
        model's), drawn from each image's seed.
        """
        src = self._noise(seeds, n)
        params = self.sample_params(
            n, temperature, labels, guidance, src, latents, latent_layers, low_res, low_res_noise
        )
        return self.params_to_images(params, seeds=src)

    def reconstruct(
        self,
        x: torch.Tensor,
        layers: int | Sequence[int],
        temperature: TemperatureSpec = DEFAULT,
        seeds: Seeds = None,
        labels: LabelSpec = None,
        low_res: LowRes = None,
        low_res_noise: NoiseLevelSpec = None,
    ) -> Reconstruction:
        """Partial posterior reconstruction: the top `layers` latent layers from the image's
        posterior, the rest from the prior (temperature applies to those; DEFAULT: the model's
        recommended one). layers = L gives a full reconstruction, 0 a prior sample. `labels` say
        what the images show (None: the null label); they are never drawn from seeds. One pass.
        A super-resolution model conditions on `low_res`, or on x average-pooled."""
        if temperature is DEFAULT:
            temperature = self.sampling.temperature
        with self._inference():
            x_in, _ = self.preprocess(x)
            n, L = x_in.shape[0], self.hp.num_layers
            ks = [int(layers)] * n if isinstance(layers, int) else [int(k) for k in layers]
            if len(ks) != n or any(not 0 <= k <= L for k in ks):
                raise ValueError(f"layers must be in 0..{L}, one value or one per image")
            src = self._noise(seeds, n)
            cond = self.embed(self._label_rows(labels, n))
            td = self.top_down(
                n,
                activations=self.activations(x_in, cond) if max(ks) > 0 else None,
                posterior_layers=ks,
                noise=src.normal(self.latent_shapes(), self.device),
                log_temperature=log_temperature(temperature, n, L, self.device),
                cond=cond,
                low_res=self.low_res_features(low_res, low_res_noise, n, src, x),
            )
            images = self.params_to_images(self.head(td.px_z), seeds=src)
            bits = torch.stack(td.kl, dim=1).sum(dim=1) / LN2
            return Reconstruction(images=images, bits=bits, seeds=src.seeds)

    def sample_stages(
        self,
        n: int,
        temperature: TemperatureSpec = DEFAULT,
        labels: LabelSpec = DEFAULT,
        guidance: GuidanceSpec = DEFAULT,
        seeds: Seeds = None,
        low_res: LowRes = None,
        low_res_noise: NoiseLevelSpec = None,
    ) -> Iterator[Stage]:
        """`sample`, resolution by resolution: after the latent layers of each resolution, a preview
        of the final images given the layers drawn so far, with every layer below at its prior mean
        (temperature 0) and the images' own output-layer draws; the last stage holds the samples,
        exactly `sample`'s for the same arguments. Stop iterating and the rest is not computed.

        A preview runs the rest of the pass from the current streams, so previews cost up to one
        pass per resolution; their latents never feed the pass itself. Super-resolution models take
        `low_res` and `low_res_noise` as `sample` does.
        """
        src = self._noise(seeds, n)
        opts = self.sampling_options(src.seeds, temperature, labels, guidance)
        temperature, labels, guidance = opts["temperature"], opts["labels"], opts["guidance"]
        with self._inference():
            noise = src.normal(self.latent_shapes(), self.device)
            pixel = src.uniform(self._pixel_shapes(), self.device) if self._pixel_shapes() else None
            features = self.low_res_features(low_res, low_res_noise, n, src)
            args = self._decode_args((), None, n, temperature, noise, labels, guidance, features)
            mean = {**args, "noise": [torch.zeros_like(e) for e in noise]}  # z = mu_p: eps = 0
        streams = None
        for resolution, stop in resolution_stops(self.hp.layer_resolutions):
            with self._inference():
                td = self.top_down(n, **args, start=streams, stop=stop)
                streams = td.streams
                final = stop == self.hp.num_layers
                px_z = td.px_z if final else self.top_down(n, **mean, start=streams).px_z
                images = self.params_to_images(self.head(px_z), noise=pixel)
            yield Stage(resolution=resolution, layers=stop, images=images, final=final)

    def draws(self, seeds: Seeds, images: torch.Tensor | None = None, labels: LabelSpec = None) -> Draws:
        """Every random draw that makes each image (model.noise.Draws). Without `images`: the draws
        of the seeds, which `sample` decodes. With uint8 `images` (n, H, W, C): per latent layer the
        standardized prior noise (z - mu_p) / sigma_p of the image's posterior sample z (its noise
        from the seed), and the seed's output-layer draws, so that `sample` at temperature 1 with
        these draws (GivenNoise) gives the image's full reconstruction."""
        n = len(seeds)
        if images is not None and images.shape[0] != n:
            raise ValueError(f"got {images.shape[0]} images and {n} seeds")
        src = self._noise(seeds, n)
        with self._inference():
            latent = src.normal(self.latent_shapes(), self.device)
            pixel = src.uniform(self._pixel_shapes(), self.device) if self._pixel_shapes() else []
            if images is not None:
                latent = self.encode(images, noise=latent, labels=labels).prior_noise
        return Draws(latent, pixel)

    def interpolate(
        self,
        start: int | torch.Tensor,
        end: int | torch.Tensor,
        steps: int,
        layers: int | None = None,
        temperature: TemperatureSpec = DEFAULT,
        labels: LabelSpec = DEFAULT,
        seed: int = 0,
        guidance: GuidanceSpec = DEFAULT,
    ) -> torch.Tensor:
        """`steps` images (uint8, NHWC) from `start` to `end`, each a seed or a uint8 image (H, W, C):
        the top `layers` latent layers (default all) interpolated spherically in their standardized
        prior noise and decoded at temperature 1, the layers below drawn from `seed` at
        `temperature`. With every layer interpolated the ends are the endpoint images: `sample` of a
        seed, or the full reconstruction of an image (its posterior noise and output-layer draws
        from `seed`). labels: one label for the path (or None); left out, the model's label rule
        applied to a seed start (so the path begins at `sample`'s image of that seed), else None.
        Left out, temperature and guidance are the model's sampling defaults."""
        L = self.hp.num_layers
        k = L if layers is None else int(layers)
        if labels is DEFAULT:
            rule = self.sampling_options([start])["labels"] if isinstance(start, int) else None
            labels = rule[0] if rule else None
        temperature = self.sampling_options([seed], temperature=temperature)["temperature"]
        ends = [
            self.draws([e]) if isinstance(e, int) else self.draws([seed], e.unsqueeze(0), labels)
            for e in (start, end)
        ]
        t = torch.tensor(steps_t(steps))
        rows = [0] * steps
        below = self.draws([seed]).rows(rows)
        given = path_draws(ends[0].rows(rows), ends[1].rows(rows), below, t, [k] * steps)
        return self.sample(
            steps,
            temperature=path_temperature([k] * steps, [temperature] * steps, L),
            labels=labels,
            guidance=guidance if labels is not None else None,
            seeds=GivenNoise(given, [seed] * steps),
        )

    # ---- execution context -----------------------------------------------------------------------

    def _inference(self) -> contextlib.AbstractContextManager:
        """inference_mode, plus autocast when an amp dtype is set on a CUDA model."""
        if torch.is_grad_enabled() and self.training:
            return contextlib.nullcontext()  # called inside training code: leave autograd alone
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        if self.amp_dtype is not None and self.device.type == "cuda":
            stack.enter_context(torch.autocast("cuda", dtype=self.amp_dtype))
        return stack
