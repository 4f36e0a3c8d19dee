"""What the client's calls return: images as the service encoded them (PNG bytes, decoded to
uint8 arrays or PIL images on demand), per-layer KL and latents as numpy arrays, model metadata."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from model.imageio import grid_png, png_array

from ..wire import tensor_from_b64


@dataclass(frozen=True)
class GeneratedImage:
    """One image of an answer: the PNG as the service encoded it, its seed and (if any) label."""

    png: bytes
    seed: int
    label: int | None = None

    def array(self) -> np.ndarray:
        """uint8 (H, W, C); C = 1 for grey-scale models."""
        return png_array(self.png)

    def pil(self) -> Image.Image:
        return Image.open(io.BytesIO(self.png))

    def save(self, path: str | Path) -> Path:
        Path(path).write_bytes(self.png)
        return Path(path)


@dataclass(frozen=True)
class Images(Sequence[GeneratedImage]):
    """The images of a /sample or /decode answer, in order (image i of a sample has seed + i)."""

    model: str
    images: tuple[GeneratedImage, ...]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):  # type: ignore[override]
        return self.images[i]

    @property
    def seeds(self) -> list[int]:
        return [im.seed for im in self.images]

    @property
    def labels(self) -> list[int | None]:
        return [im.label for im in self.images]

    def arrays(self) -> np.ndarray:
        """uint8 (n, H, W, C)."""
        return np.stack([im.array() for im in self.images])

    def grid_png(self) -> bytes:
        """Their grid as one PNG: the bytes the service sends for `Accept: image/png`."""
        return grid_png(self.arrays())


@dataclass(frozen=True)
class Interpolation(Images):
    """The images of an /interpolate answer, start to end: one label and one seed for the path."""

    t: tuple[float, ...] = ()  # each image's place on the path: 0 at the start, 1 at the end
    layers: int = 0  # the top latent layers interpolated
    seed: int = 0  # of the layers below, and of image ends' posterior draws
    label: int | None = None

    def grid_png(self) -> bytes:
        """One row, as the service sends it for `Accept: image/png`."""
        return grid_png(self.arrays(), columns=len(self))


@dataclass(frozen=True)
class Reconstruction:
    model: str
    layers: int  # top latent layers taken from the image's posterior
    image: GeneratedImage
    bits: float  # KL of those layers: the bits the reconstruction took from the image


@dataclass(frozen=True)
class Encoding:
    model: str
    seed: int
    dims: int  # H * W * C: the "per dim" of the rates
    kl_bits: np.ndarray  # float64 (L,): KL of each latent layer in bits, top-down
    rate_bits_per_dim: float
    distortion_bits_per_dim: float
    elbo_bits_per_dim: float  # an upper bound on the negative log-likelihood
    latents: list[np.ndarray] = field(default_factory=list)  # float32 (Z, r, r) of the top layers


@dataclass(frozen=True)
class ModelInfo:
    """GET /v1/models/{name}: what the model is and how it is served."""

    id: str
    default: bool
    image_size: int
    image_channels: int
    num_layers: int
    latent_shapes: list[list[int]]
    parameters: int
    num_classes: int
    conditional: bool
    output_head: str
    dataset: str
    device: str
    amp: str
    provenance: dict[str, Any]
    sampling: dict[str, Any] = field(default_factory=dict)  # defaults for what a request leaves out
    limits: dict[str, Any] = field(default_factory=dict)  # max_batch_size, max_images_per_request, ...
    object: str = "model"  # or "cascade": then `stages` lists its stages (model, sizes, options)
    family: str = "vdvae"  # "vdvae" (openai/vdvae) or "visual-vae" (Luhman & Luhman 2022)
    classes: list[str] | None = None  # class names by index (a label may be any of a class's names)
    low_res: int = 0  # super-resolution models: the size of the images `upscale` takes
    stages: list[dict[str, Any]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # fields this client does not know yet

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> ModelInfo:
        known = {f.name for f in fields(cls)} - {"extra"}
        return cls(
            **{k: v for k, v in body.items() if k in known},
            extra={k: v for k, v in body.items() if k not in known and k != "object"},
        )


def parse_images(r: httpx.Response) -> Images:
    body = r.json()
    images = (
        GeneratedImage(base64.b64decode(d["b64_json"]), d["seed"], d.get("label")) for d in body["data"]
    )
    return Images(body["model"], tuple(images))


def parse_interpolation(r: httpx.Response) -> Interpolation:
    body = r.json()
    seed, label = body["seed"], body.get("label")
    images = tuple(GeneratedImage(base64.b64decode(d["b64_json"]), seed, label) for d in body["data"])
    t = tuple(d["t"] for d in body["data"])
    return Interpolation(body["model"], images, t, body["layers"], seed, label)


def parse_reconstruction(r: httpx.Response) -> Reconstruction:
    body = r.json()
    (d,) = body["data"]
    image = GeneratedImage(base64.b64decode(d["b64_json"]), d["seed"], d.get("label"))
    return Reconstruction(body["model"], body["layers"], image, d["bits"])


def parse_encoding(r: httpx.Response) -> Encoding:
    body = r.json()
    return Encoding(
        model=body["model"],
        seed=body["seed"],
        dims=body["dims"],
        kl_bits=np.asarray(body["kl_bits"], dtype=np.float64),
        rate_bits_per_dim=body["rate_bits_per_dim"],
        distortion_bits_per_dim=body["distortion_bits_per_dim"],
        elbo_bits_per_dim=body["elbo_bits_per_dim"],
        latents=[tensor_from_b64(t["data"], t["shape"]) for t in body.get("latents", [])],
    )


def parse_models(r: httpx.Response) -> list[ModelInfo]:
    return [ModelInfo.from_json(m) for m in r.json()["data"]]
