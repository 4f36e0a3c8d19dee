"""Prior sampling replayed from CUDA graphs: one graph per batch bucket, captured on first use.

A top-down pass is a few kernels per convolution over dozens of latent layers; at small batches the
GPU waits on the host launching them. A CUDA graph replays every kernel of a pass from one launch,
but only at the shapes it was captured with, so a batch of n images runs in the smallest bucket that
holds it, padded with images whose results are dropped: an image's result depends on its own draws
only (model.noise), never on the other rows of its batch, up to the float rounding of kernels chosen
for another batch size. Under guidance every row of the bucket takes the unconditional stream, an
unguided row with weights 0, which leaves its prior exactly the conditional one.

Plain prior sampling only (sample, sample_params): a call with given latents or a low-resolution
input, or a batch larger than the largest bucket, runs the eager pass. Off unless asked for
(model.inference.optimize_for_inference(cuda_graphs=True)). On the CPU the same padded pass runs
without capture (`capture=False`), which is how the tests check the padding and the guidance; the
capture and its replay run on CUDA only.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .guidance import Guidance
from .hierarchical import HierarchicalVAE
from .options import GuidanceSpec, LabelSpec, TemperatureSpec, guidance_rows, label_rows, log_temperature


def power_of_two_buckets(largest: int) -> list[int]:
    """1, 2, 4, ... up to and including `largest` (itself the last bucket when not a power of two):
    a padded batch computes at most twice its images."""
    out = [1]
    while out[-1] * 2 < largest:
        out.append(out[-1] * 2)
    return sorted({*out, largest})


@dataclass
class BucketInputs:
    """The tensors one bucket's pass reads: filled before each run, at fixed addresses."""

    noise: list[torch.Tensor]  # per latent layer (B, Z, r, r)
    log_t: torch.Tensor  # (B, L)
    labels: torch.Tensor | None  # (B,) embedding rows (null: num_classes); conditional models
    w_mean: torch.Tensor | None  # (B, 1, 1, 1); guided buckets
    w_var: torch.Tensor | None


@dataclass
class BucketPass:
    inputs: BucketInputs
    params: torch.Tensor | None  # the captured pass's output (None: not captured)
    graph: torch.cuda.CUDAGraph | None


class SampleGraphs:
    """The sampling passes of one model, by (bucket, guided)."""

    def __init__(self, vae: HierarchicalVAE, buckets: Sequence[int], capture: bool | None = None) -> None:
        if not buckets or min(buckets) < 1:
            raise ValueError(f"buckets must be batch sizes >= 1, got {list(buckets)}")
        self.vae = vae
        self.buckets = sorted({int(b) for b in buckets})
        self.capture = vae.device.type == "cuda" if capture is None else capture
        if self.capture and vae.device.type != "cuda":
            raise ValueError("CUDA graphs need a model on a CUDA device")
        self.passes: dict[tuple[int, bool], BucketPass] = {}

    def bucket(self, n: int) -> int | None:
        """The smallest bucket holding n images; None above the largest."""
        i = bisect.bisect_left(self.buckets, n)
        return self.buckets[i] if i < len(self.buckets) else None

    def params(
        self,
        n: int,
        noise: Sequence[torch.Tensor],
        temperature: TemperatureSpec,
        labels: LabelSpec,
        guidance: GuidanceSpec,
    ) -> torch.Tensor | None:
        """The output-layer parameters (n, H, W, out) of the prior pass with these draws and options
        (checked as the eager pass checks them); None when n is above the largest bucket."""
        size = self.bucket(n)
        if size is None:
            return None
        vae, hp, device = self.vae, self.vae.hp, self.vae.device
        y = label_rows(hp, labels, n, device)
        g = guidance_rows(hp, guidance, y, n, vae.embed)
        run = self.passes.get((size, g is not None)) or self._prepare(size, g is not None)
        inputs = run.inputs
        for static, draw in zip(inputs.noise, noise, strict=True):
            static[:n].copy_(draw)
            static[n:].zero_()
        lt = log_temperature(temperature, n, hp.num_layers, device)
        inputs.log_t.zero_()
        if lt is not None:
            inputs.log_t[:n].copy_(lt)
        if inputs.labels is not None:
            inputs.labels[:n].copy_(y)
            inputs.labels[n:].fill_(hp.num_classes)
        if inputs.w_mean is not None and inputs.w_var is not None and g is not None:
            for static, weights in ((inputs.w_mean, g.w_mean), (inputs.w_var, g.w_var)):
                static.zero_()
                static.index_copy_(0, g.rows, weights.to(static.dtype))
        if run.graph is None:
            return self._pass(size, inputs)[:n].clone()
        run.graph.replay()
        return run.params[:n].clone()

    def _prepare(self, size: int, guided: bool) -> BucketPass:
        vae, hp, device = self.vae, self.vae.hp, self.vae.device
        inputs = BucketInputs(
            noise=[torch.zeros(size, *shape, device=device) for shape in vae.latent_shapes()],
            log_t=torch.zeros(size, hp.num_layers, device=device),
            labels=torch.full((size,), hp.num_classes, device=device) if hp.conditional else None,
            w_mean=torch.zeros(size, 1, 1, 1, device=device) if guided else None,
            w_var=torch.zeros(size, 1, 1, 1, device=device) if guided else None,
        )
        run = BucketPass(inputs, None, None)
        if self.capture:
            run.params, run.graph = self._capture(size, inputs)
        self.passes[(size, guided)] = run
        return run

    def _pass(self, size: int, inputs: BucketInputs) -> torch.Tensor:
        """The prior pass of a full bucket, every row guided when the bucket is."""
        vae = self.vae
        g = None
        if inputs.w_mean is not None and inputs.w_var is not None:
            null = torch.full((size,), vae.hp.num_classes, device=inputs.w_mean.device)
            g = Guidance(
                rows=torch.arange(size, device=inputs.w_mean.device),
                w_mean=inputs.w_mean,
                w_var=inputs.w_var,
                null_cond=vae.embed(null),
            )
        td = vae.top_down(
            size,
            noise=inputs.noise,
            log_temperature=inputs.log_t,
            cond=vae.embed(inputs.labels),
            guidance=g,
        )
        return vae.head(td.px_z)

    def _capture(self, size: int, inputs: BucketInputs) -> tuple[torch.Tensor, torch.cuda.CUDAGraph]:
        device = self.vae.device
        # Autocast's cache of cast weights must not outlive the capture (PyTorch's CUDA graph notes).
        amp = self.vae.amp_dtype
        autocast = torch.autocast(
            "cuda", dtype=amp or torch.float16, enabled=amp is not None, cache_enabled=False
        )
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side), autocast:
            for _ in range(2):  # cuDNN and cuBLAS pick kernels and workspaces outside the capture
                self._pass(size, inputs)
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), autocast:
            params = self._pass(size, inputs)
        return params, graph
