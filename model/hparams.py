"""Hyperparameters of a Very Deep VAE: architecture, preprocessing and our extensions.

Field names follow openai/vdvae (`hps.py`) so that an official hyperparameter dump maps onto
`HParams.from_official` without renaming. Everything is validated at construction: a bad block
string, width or mixin fails here with a message naming the bad token, not later as a shape error.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .blockstrings import HParamsError, evenly_spaced, parse_attention, parse_layer_string, parse_widths
from .presets import CIFAR10_DEC, CIFAR10_ENC, PRESETS

OUTPUT_HEADS = ("dmol", "gaussian")


# --------------------------------------------------------------------------------------------
# Preprocessing: the official per-dataset constants (vdvae data.py), plus our demo data
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preprocessing:
    """How uint8 pixels become the encoder input and the loss target.

    ``x_in = (x + shift) * scale``; ``x_target = (x + shift_loss) * scale_loss`` in [-1, 1].
    `unit_input`: the pipeline feeds x/255 rather than x (official ffhq_1024).
    `low_bit`: 5-bit target ``floor(x/8)*8`` and a 5-bit likelihood (official ffhq_256).
    """

    shift: float = -127.5
    scale: float = 1.0 / 127.5
    shift_loss: float = -127.5
    scale_loss: float = 1.0 / 127.5
    unit_input: bool = False
    low_bit: bool = False


PREPROCESSING: dict[str, Preprocessing] = {
    "cifar10": Preprocessing(shift=-120.63838, scale=1.0 / 64.16736),
    "imagenet32": Preprocessing(shift=-116.2373, scale=1.0 / 69.37404),
    "imagenet64": Preprocessing(shift=-115.92961967, scale=1.0 / 69.37404),
    "ffhq_256": Preprocessing(shift=-112.8666757481, scale=1.0 / 69.84780273, low_bit=True),
    "ffhq_1024": Preprocessing(
        shift=-0.4387, scale=1.0 / 0.2743, shift_loss=-0.5, scale_loss=2.0, unit_input=True
    ),
    # Mean and std of the 4,500 training digits, zero-padded to 32x32 (model/training/data.py).
    "mnist": Preprocessing(shift=-25.6068, scale=1.0 / 70.2471),
}

OFFICIAL_IMAGE_SHAPES = {
    "cifar10": (32, 3),
    "imagenet32": (32, 3),
    "imagenet64": (64, 3),
    "ffhq_256": (256, 3),
    "ffhq_1024": (1024, 3),
}


# --------------------------------------------------------------------------------------------
# HParams
# --------------------------------------------------------------------------------------------


def param(default: Any, help: str, **metadata: Any) -> Any:
    """A dataclass field whose `help` documents it once, for the code and for generated CLIs."""
    return field(default=default, metadata={"help": help, **metadata})


@dataclass
class HParams:
    """Architecture and preprocessing of one VDVAE (defaults: the official cifar10 model)."""

    dataset: str = param(
        "cifar10", "selects the preprocessing constants (official datasets, mnist); others map to [-1, 1]"
    )
    image_size: int = param(32, "height and width of the images")
    image_channels: int = param(3, "1 (grey-scale) or 3 (RGB)")
    width: int = param(384, "channels of the residual stream (per resolution: custom_width_str)")
    zdim: int = param(16, "channels of each latent layer")
    bottleneck_multiple: float = param(0.25, "inner width of every residual block = int(width * this)")
    num_mixtures: int = param(10, "logistic mixture components of the DMoL head")
    enc_blocks: str = param(CIFAR10_ENC, "encoder blocks: 'RxN' N blocks at R, 'RdK' block then pool by K")
    dec_blocks: str = param(
        CIFAR10_DEC, "decoder blocks, one latent layer each: 'RxN', 'RmM' (mixin from resolution M)"
    )
    no_bias_above: int = param(64, "learned initial top-down state (bias_xs) only up to this resolution")
    custom_width_str: str = param("", "'res:width,...' overrides of width per resolution")
    # --- extensions (not in openai/vdvae) ---
    num_classes: int = param(0, "> 0: class-conditional, with a null label (index num_classes) for guidance")
    class_dim: int = param(64, "size of the shared class embedding each conditioned block projects")
    output_head: str = param(
        "dmol", "'dmol' (official) or 'gaussian' (Luhman & Luhman 2022)", choices=OUTPUT_HEADS
    )
    sigma_q: float = param(0.025, "Gaussian head: width of the data distribution in the training loss")
    attention: str = param(
        "",
        "single-head attention blocks in the encoder and the decoder, after evenly spaced blocks of "
        "a resolution: 'R' (one at resolution R) or 'RxN' (N), comma-separated, e.g. '16,8'",
    )
    low_res: int = param(
        0, "> 0: a super-resolution model, conditioned on the image average-pooled to low_res x low_res"
    )
    low_res_blocks: int = param(2, "super-resolution: residual blocks of the low-resolution encoder")
    low_res_noise: float = param(
        0.1,
        "super-resolution: std of the Gaussian noise added to the [-1, 1] low-resolution input in "
        "training (conditioning augmentation), and its default at sampling",
    )
    # Parsed forms, derived from the strings above.
    enc_layers: list[tuple[int, int | None]] = field(init=False, repr=False, compare=False)
    dec_layers: list[tuple[int, int | None]] = field(init=False, repr=False, compare=False)
    # Indices of the encoder and decoder blocks that an attention block follows.
    enc_attention: list[int] = field(init=False, repr=False, compare=False)
    dec_attention: list[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._validate()

    # ---- derived quantities ----------------------------------------------------------------

    def width_at(self, res: int) -> int:
        """Channel width of the residual stream at resolution `res`."""
        return self._widths.get(res, self.width)

    def bottleneck_at(self, res: int) -> int:
        return int(self.width_at(res) * self.bottleneck_multiple)

    @property
    def num_layers(self) -> int:
        """Number of latent layers (= decoder blocks)."""
        return len(self.dec_layers)

    @property
    def layer_resolutions(self) -> list[int]:
        return [res for res, _ in self.dec_layers]

    @property
    def image_dims(self) -> int:
        return self.image_size * self.image_size * self.image_channels

    @property
    def preprocessing(self) -> Preprocessing:
        return PREPROCESSING.get(self.dataset, Preprocessing())

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    @property
    def low_res_resolutions(self) -> list[int]:
        """Super-resolution: the decoder resolutions that receive low-resolution features, highest first."""
        if not self.low_res:
            return []
        return sorted({r for r in self.layer_resolutions if r <= self.low_res}, reverse=True)

    # ---- validation ------------------------------------------------------------------------

    def _validate(self) -> None:
        for name in ("image_size", "image_channels", "width", "zdim", "num_mixtures", "no_bias_above"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise HParamsError(f"{name} must be a positive integer, got {value!r}")
        if not 0 < self.bottleneck_multiple <= 16:
            raise HParamsError(f"bottleneck_multiple must be in (0, 16], got {self.bottleneck_multiple!r}")
        if self.output_head not in OUTPUT_HEADS:
            raise HParamsError(f"output_head must be one of {OUTPUT_HEADS}, got {self.output_head!r}")
        if self.output_head == "dmol" and self.image_channels not in (1, 3):
            raise HParamsError(f"the DMoL head supports 1 or 3 image channels, got {self.image_channels}")
        if self.num_classes < 0 or self.class_dim < 1:
            raise HParamsError("num_classes must be >= 0 and class_dim >= 1")
        if not self.sigma_q > 0:
            raise HParamsError(f"sigma_q must be positive, got {self.sigma_q!r}")

        self._widths = parse_widths(self.width, self.custom_width_str)
        self.enc_layers = parse_layer_string(self.enc_blocks, "enc_blocks")
        self.dec_layers = parse_layer_string(self.dec_blocks, "dec_blocks")
        for res in {r for r, _ in self.enc_layers} | {r for r, _ in self.dec_layers}:
            if self.bottleneck_at(res) < 1:
                raise HParamsError(
                    f"width {self.width_at(res)} at resolution {res} times bottleneck_multiple "
                    f"{self.bottleneck_multiple} leaves no channels"
                )
        if self.width_at(self.image_size) != self.width:
            raise HParamsError(
                f"custom_width_str sets width {self.width_at(self.image_size)} at the image resolution "
                f"{self.image_size}, but width is {self.width}; they must agree"
            )
        self._validate_encoder()
        self._validate_decoder()
        self._validate_attention()
        self._validate_low_res()

    def _validate_encoder(self) -> None:
        res = self.image_size
        activations = {res}
        for i, (r, down) in enumerate(self.enc_layers):
            if r != res:
                raise HParamsError(
                    f"enc_blocks: block {i} is at resolution {r} but the encoder stream is at {res} there "
                    f"(in {self.enc_blocks!r})"
                )
            if down is not None:
                if res % down:
                    raise HParamsError(f"enc_blocks: '{r}d{down}' does not divide resolution {res}")
                res //= down
                if self.width_at(res) < self.width_at(r):
                    raise HParamsError(
                        f"enc_blocks: width shrinks from {self.width_at(r)} at resolution {r} to "
                        f"{self.width_at(res)} at {res}; the encoder can only pad channels"
                    )
            activations.add(res)
        self._enc_resolutions = activations

    def _validate_decoder(self) -> None:
        seen: set[int] = set()
        for i, (r, mixin) in enumerate(self.dec_layers):
            if r not in self._enc_resolutions:
                raise HParamsError(
                    f"dec_blocks: block {i} is at resolution {r}, which the encoder never produces "
                    f"(encoder resolutions: {sorted(self._enc_resolutions)})"
                )
            if mixin is not None:
                if mixin not in seen:
                    raise HParamsError(
                        f"dec_blocks: '{r}m{mixin}' mixes in resolution {mixin}, "
                        "which no earlier block produced"
                    )
                if mixin > r or r % mixin:
                    raise HParamsError(
                        f"dec_blocks: '{r}m{mixin}': {r} must be a multiple of the mixin resolution"
                    )
                if self.width_at(mixin) < self.width_at(r):
                    raise HParamsError(
                        f"dec_blocks: '{r}m{mixin}' mixes a {self.width_at(mixin)}-channel stream into a "
                        f"{self.width_at(r)}-channel one; the lower resolution must be at least as wide"
                    )
            seen.add(r)
        if self.dec_layers[-1][0] != self.image_size:
            raise HParamsError(
                f"dec_blocks must end at the image resolution {self.image_size}, "
                f"ends at {self.dec_layers[-1][0]}"
            )

    def _validate_attention(self) -> None:
        """Place each attention block after evenly spaced blocks whose output is at its resolution."""
        enc_out = [r // (down or 1) for r, down in self.enc_layers]
        self.enc_attention, self.dec_attention = [], []
        for token, res, count in parse_attention(self.attention):
            for part, outputs, placed in (
                ("encoder", enc_out, self.enc_attention),
                ("decoder", self.layer_resolutions, self.dec_attention),
            ):
                blocks = [i for i, r in enumerate(outputs) if r == res]
                if len(blocks) < count:
                    have = f"only {len(blocks)}" if blocks else "no"
                    raise HParamsError(
                        f"attention: token {token!r} asks for {count} attention block(s) at resolution "
                        f"{res} but the {part} has {have} block(s) there "
                        f"({part} resolutions: {sorted(set(outputs))})"
                    )
                placed += [blocks[j] for j in evenly_spaced(count, len(blocks))]
        self.enc_attention.sort()
        self.dec_attention.sort()

    def _validate_low_res(self) -> None:
        if not isinstance(self.low_res, int) or isinstance(self.low_res, bool) or self.low_res < 0:
            raise HParamsError(f"low_res must be 0 (off) or a resolution, got {self.low_res!r}")
        if not isinstance(self.low_res_blocks, int) or self.low_res_blocks < 0:
            raise HParamsError(f"low_res_blocks must be >= 0, got {self.low_res_blocks!r}")
        if not (math.isfinite(self.low_res_noise) and self.low_res_noise >= 0):
            raise HParamsError(f"low_res_noise must be finite and >= 0, got {self.low_res_noise!r}")
        if self.low_res and (self.low_res >= self.image_size or self.image_size % self.low_res):
            raise HParamsError(
                f"low_res {self.low_res} must be smaller than image_size {self.image_size} and divide it"
            )
        if self.low_res and self.low_res not in self.layer_resolutions:
            raise HParamsError(
                f"low_res {self.low_res}: the decoder has no block at that resolution to condition "
                f"(decoder resolutions: {sorted(set(self.layer_resolutions))})"
            )

    # ---- construction and serialisation ------------------------------------------------------

    @classmethod
    def preset(cls, name: str) -> HParams:
        """The official presets (cifar10, imagenet32, imagenet64, ffhq256, ffhq1024) and ours."""
        try:
            fields = PRESETS[name].hparams
        except KeyError:
            raise HParamsError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None
        return cls(**fields)

    @classmethod
    def from_official(cls, h: Mapping[str, Any] | Any) -> HParams:
        """Build from official hyperparameters (a dict or an `hps.Hyperparams`/namespace).

        Training-only official fields are ignored; missing architecture fields take the official
        argparse defaults, and image size/channels follow the dataset as in vdvae's data.py.
        """
        get = h.get if isinstance(h, Mapping) else (lambda k, d=None: getattr(h, k, d))
        dataset = get("dataset") or "cifar10"
        size, channels = OFFICIAL_IMAGE_SHAPES.get(dataset, (None, 3))
        official_defaults = {
            "width": 512,
            "zdim": 16,
            "bottleneck_multiple": 0.25,
            "num_mixtures": 10,
            "no_bias_above": 64,
            "custom_width_str": "",
        }
        kwargs: dict[str, Any] = {"dataset": dataset}
        for name, default in official_defaults.items():
            value = get(name)
            kwargs[name] = default if value is None else value
        for name in ("enc_blocks", "dec_blocks"):
            if get(name) is None:
                raise HParamsError(f"official hyperparameters lack {name}")
            kwargs[name] = get(name)
        kwargs["image_size"] = get("image_size") or size
        kwargs["image_channels"] = get("image_channels") or channels
        if kwargs["image_size"] is None:
            raise HParamsError(f"image_size missing and dataset {dataset!r} does not imply it")
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> HParams:
        known = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(d) - known)
        if unknown:
            raise HParamsError(f"unknown hyperparameter(s) {unknown}; known: {sorted(known)}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, s: str) -> HParams:
        return cls.from_dict(json.loads(s))

    def replace(self, **changes: Any) -> HParams:
        return HParams.from_dict({**self.to_dict(), **changes})
