"""The work of one image, and what comes back: the hand-off types between validation, the batcher,
the engine and the operations.

An item carries one image's own parameters (seed, temperature, label, guidance, depth, given
latents), so items of different requests can share a batch; a result is that image's answer.
NumPy only: building an item needs neither torch nor the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

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


# An image is a uint8 (H, W, C) array: the result of a sample or decode item.
Image = np.ndarray


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
