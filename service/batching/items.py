"""The work of one image, and what comes back: the hand-off types between the inputs, the batcher,
the engine and the operations.

An item carries one image's own parameters (seed, temperature, label, guidance, depth, given
latents, interpolation path), so items of different requests can share a batch; a result is that
image's answer. A streaming item also names where its previews go (a StageSink, which the engine
thread calls after each resolution). An answered image carries its PNG, written on the engine's
thread (`with_png`). NumPy only: building an item needs neither torch nor the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from model.imageio import fast_png

# A temperature: one float for every latent layer, or one per latent layer (top-down).
Temperature = float | tuple[float, ...]
# Classifier-free guidance weights (w_mean, w_var).
GuidanceWeights = tuple[float, float]


@dataclass(frozen=True)
class SampleItem:
    seed: int
    temperature: Temperature = 1.0
    label: int | None = None
    guidance: GuidanceWeights | None = None
    keep_mean: bool = False  # the result also carries the raw predicted mean (a cascade's next stage)


@dataclass(frozen=True)
class UpscaleItem:
    """A super-resolution model's sample given a low-resolution image (/upscale, a cascade's stage)."""

    # uint8 (h, h, C), h = the model's low_res; or, for a visual-vae model in a cascade, the previous
    # stage's raw mean (float32, model space)
    low_res: np.ndarray
    seed: int
    temperature: Temperature = 1.0
    label: int | None = None
    guidance: GuidanceWeights | None = None
    low_res_noise: float | None = None  # None: the model's training value
    keep_mean: bool = False  # as SampleItem's: a later stage takes this one's raw mean


@dataclass(frozen=True)
class ReconstructItem:
    image: np.ndarray  # uint8 (H, W, C)
    layers: int  # top latent layers taken from the image's posterior
    seed: int
    temperature: Temperature = 1.0
    label: int | None = None


@dataclass(frozen=True)
class EncodeItem:
    image: np.ndarray  # uint8 (H, W, C)
    seed: int
    label: int | None = None
    latent_layers: int = 0  # how many top layers' z to return


@dataclass(frozen=True)
class DecodeItem:
    latents: tuple[np.ndarray, ...]  # float32 (Z, r, r) for the top len(latents) layers
    seed: int
    temperature: Temperature = 1.0
    label: int | None = None
    guidance: GuidanceWeights | None = None


@dataclass(frozen=True)
class Endpoint:
    """One end of an interpolation: the image a seed samples, or an image (its posterior noise and
    output-layer draws from `seed`)."""

    seed: int
    image: np.ndarray | None = None  # uint8 (H, W, C)


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: a request's items share one
class InterpolationPath:
    start: Endpoint
    end: Endpoint
    layers: int  # top latent layers interpolated
    seed: int  # the layers below (and their output-layer draws)
    temperature: Temperature = 1.0  # of the layers below
    label: int | None = None
    guidance: GuidanceWeights | None = None


@dataclass(frozen=True)
class InterpolateItem:
    path: InterpolationPath
    t: float  # 0 at the start, 1 at the end


# An image is a uint8 (H, W, C) array: the result of a sample, decode or interpolate item.
Image = np.ndarray


class ImageWithPng(np.ndarray):
    """A result image, (H, W, C) uint8, that carries its PNG (`png`), written on the engine's thread
    right after the pass (`with_png`): there zlib's release of the GIL costs nothing, where on the
    event loop every PNG handed the GIL to the engine's thread and waited to take it back. Views,
    copies and stacks of it (a grid) carry no PNG: only the image it was made for does."""

    png: bytes | None = None
    # The model's raw predicted mean (H, W, C) float32 in [-1, 1] model space, unclipped, when a
    # cascade's next stage conditions on it rather than on the 8-bit image.
    raw_mean: np.ndarray | None = None

    def __array_finalize__(self, obj: object) -> None:
        self.png = None
        self.raw_mean = None


def with_png(images: np.ndarray, means: np.ndarray | None = None) -> list[Image]:
    """(n, H, W, C) uint8 -> its n images, each carrying its PNG (and its row of `means`)."""
    out = []
    for i, image in enumerate(images):
        encoded = image.view(ImageWithPng)
        encoded.png = fast_png(image)
        encoded.raw_mean = None if means is None else means[i]
        out.append(encoded)
    return out


@dataclass(frozen=True)
class StageInfo:
    """One resolution of a progressive sample."""

    index: int  # 0 .. count - 1
    count: int  # resolutions in the pass; the last one gives the final images
    resolution: int
    layers: int  # latent layers drawn so far


class StageSink(Protocol):
    """Where a streaming request's previews go."""

    def send(self, stage: StageInfo, images: dict[int, Image]) -> bool:
        """Previews of some of the request's images, by their place in the request. Called on the
        engine thread; returns whether the request still wants them (False: its client has gone)."""
        ...


@dataclass(frozen=True)
class StreamItem:
    sample: SampleItem
    sink: StageSink  # shared by the request's items
    index: int  # the image's place in its request


@dataclass
class ReconstructResult:
    image: Image
    bits: float  # KL of the posterior layers taken from the image, in bits


@dataclass
class EncodeResult:
    kl_bits: list[float]  # per latent layer, top-down
    rate_bpd: float  # total KL in bits per dim
    distortion_bpd: float  # reconstruction NLL in bits per dim
    elbo_bpd: float  # negative ELBO (an upper bound on the NLL) in bits per dim
    latents: list[np.ndarray] = field(default_factory=list)  # float32 (Z, r, r) of the top layers
