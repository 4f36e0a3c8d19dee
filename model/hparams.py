"""Hyperparameters of a Very Deep VAE: architecture, preprocessing and our extensions.

Field names follow openai/vdvae (`hps.py`) so that an official hyperparameter dump maps onto
`HParams.from_official` without renaming. Everything is validated at construction: a bad block
string, width or mixin fails here with a message naming the bad token, not later as a shape error.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

OUTPUT_HEADS = ("dmol", "gaussian")


class HParamsError(ValueError):
    """An invalid hyperparameter: the message names the field and the offending token."""


# --------------------------------------------------------------------------------------------
# Block strings and widths
# --------------------------------------------------------------------------------------------


def parse_layer_string(s: str, field_name: str = "blocks") -> list[tuple[int, int | None]]:
    """Parse an official block string such as ``"32x11,32d2,16m8,1"``.

    Returns one ``(resolution, k)`` pair per block. ``RxN`` gives N plain blocks, ``RmM`` and
    ``RdK`` give ``(R, M)``/``(R, K)``: the official parser treats ``m`` and ``d`` alike and lets the
    caller decide (the encoder reads a down-sampling rate, the decoder a mixin resolution).
    """
    if not isinstance(s, str) or not s.strip():
        raise HParamsError(f"{field_name} is empty: expected tokens like '32x4,32d2,16x2'")
    layers: list[tuple[int, int | None]] = []
    for token in s.split(","):
        tok = token.strip()
        try:
            if "x" in tok:
                res, count = (int(a) for a in tok.split("x"))
                if count < 1:
                    raise ValueError
                layers += [(res, None)] * count
            elif "m" in tok or "d" in tok:
                res, k = (int(a) for a in tok.replace("m", "d").split("d"))
                if k < 1:
                    raise ValueError
                layers.append((res, k))
            else:
                res = int(tok)
                layers.append((res, None))
        except ValueError:
            raise HParamsError(
                f"{field_name}: bad token {token!r} in {s!r}; expected 'RxN' (N blocks at resolution R), "
                "'RdK' (block then down-sample by K), 'RmM' (mixin from resolution M) or 'R'"
            ) from None
        if res < 1:
            raise HParamsError(f"{field_name}: bad token {token!r} in {s!r}; resolution must be >= 1")
    return layers


def parse_widths(width: int, custom_width_str: str) -> dict[int, int]:
    """Explicit per-resolution widths from ``"res:width,..."``; other resolutions use `width`."""
    mapping: dict[int, int] = {}
    if not custom_width_str:
        return mapping
    for token in custom_width_str.split(","):
        try:
            res, w = (int(a) for a in token.strip().split(":"))
        except ValueError:
            raise HParamsError(
                f"custom_width_str: bad token {token!r} in {custom_width_str!r}; expected 'res:width'"
            ) from None
        if res < 1 or w < 1:
            raise HParamsError(
                f"custom_width_str: bad token {token!r}; resolution and width must be positive"
            )
        mapping[res] = w
    return mapping


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
    # Mean and std of the 4,500 training digits, zero-padded to 32x32 (model/data.py).
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

CIFAR10_ENC = "32x11,32d2,16x6,16d2,8x6,8d2,4x3,4d4,1x3"
CIFAR10_DEC = "1x1,4m1,4x2,8m4,8x5,16m8,16x10,32m16,32x21"


@dataclass
class HParams:
    """Architecture and preprocessing of one VDVAE (defaults: the official cifar10 model)."""

    dataset: str = "cifar10"  # selects the preprocessing constants (PREPROCESSING); others: [-1, 1]
    image_size: int = 32
    image_channels: int = 3
    width: int = 384  # channels of the residual stream (per resolution: custom_width_str)
    zdim: int = 16  # channels of each latent layer
    bottleneck_multiple: float = 0.25  # inner width of every residual block = int(width * this)
    num_mixtures: int = 10  # logistic mixture components of the DMoL head
    enc_blocks: str = CIFAR10_ENC
    dec_blocks: str = CIFAR10_DEC  # one latent layer per parsed block, mixins included
    no_bias_above: int = 64  # learned initial top-down state (bias_xs) only up to this resolution
    custom_width_str: str = ""  # "res:width,..." overrides of `width` per resolution
    # --- extensions (not in openai/vdvae) ---
    num_classes: int = 0  # > 0: class-conditional, with a null label (index num_classes) for guidance
    class_dim: int = 64  # size of the shared class embedding each conditioned block projects
    output_head: str = "dmol"  # "dmol" (official) or "gaussian" (Luhman & Luhman 2022)
    sigma_q: float = 0.025  # Gaussian head: width of the data distribution in the training loss
    # Parsed forms, derived from the strings above.
    enc_layers: list[tuple[int, int | None]] = field(init=False, repr=False, compare=False)
    dec_layers: list[tuple[int, int | None]] = field(init=False, repr=False, compare=False)

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
    def latent_dims(self) -> int:
        return sum(self.zdim * r * r for r in self.layer_resolutions)

    @property
    def image_dims(self) -> int:
        return self.image_size * self.image_size * self.image_channels

    @property
    def preprocessing(self) -> Preprocessing:
        return PREPROCESSING.get(self.dataset, Preprocessing())

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

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

    # ---- construction and serialisation ------------------------------------------------------

    @classmethod
    def preset(cls, name: str) -> HParams:
        """The official presets (cifar10, imagenet32, imagenet64, ffhq256, ffhq1024) and ours."""
        try:
            fields = PRESETS[name]
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


PRESETS: dict[str, dict[str, Any]] = {
    "cifar10": dict(
        dataset="cifar10",
        image_size=32,
        width=384,
        zdim=16,
        enc_blocks=CIFAR10_ENC,
        dec_blocks=CIFAR10_DEC,
    ),
    "imagenet32": dict(
        dataset="imagenet32",
        image_size=32,
        width=512,
        zdim=16,
        enc_blocks="32x15,32d2,16x9,16d2,8x8,8d2,4x6,4d4,1x6",
        dec_blocks="1x2,4m1,4x4,8m4,8x9,16m8,16x19,32m16,32x40",
    ),
    "imagenet64": dict(
        dataset="imagenet64",
        image_size=64,
        width=512,
        zdim=16,
        enc_blocks="64x11,64d2,32x20,32d2,16x9,16d2,8x8,8d2,4x7,4d4,1x5",
        dec_blocks="1x2,4m1,4x3,8m4,8x7,16m8,16x15,32m16,32x31,64m32,64x12",
    ),
    "ffhq256": dict(
        dataset="ffhq_256",
        image_size=256,
        width=512,
        zdim=16,
        enc_blocks="256x3,256d2,128x8,128d2,64x12,64d2,32x17,32d2,16x7,16d2,8x5,8d2,4x5,4d4,1x4",
        dec_blocks="1x2,4m1,4x3,8m4,8x4,16m8,16x9,32m16,32x21,64m32,64x13,128m64,128x7,256m128",
    ),
    "ffhq1024": dict(
        dataset="ffhq_1024",
        image_size=1024,
        width=16,
        zdim=16,
        num_mixtures=2,
        custom_width_str="512:32,256:64,128:512,64:512,32:512,16:512,8:512,4:512,1:512",
        enc_blocks="1024x1,1024d2,512x3,512d2,256x5,256d2,128x7,128d2,64x10,64d2,32x14,32d2,16x7,16d2,"
        "8x5,8d2,4x5,4d4,1x4",
        dec_blocks="1x2,4m1,4x3,8m4,8x4,16m8,16x9,32m16,32x20,64m32,64x14,128m64,128x7,256m128,256x2,"
        "512m256,1024m512",
    ),
    # The official test harness's TINY model (140,924 parameters): fast enough for unit tests.
    "tiny": dict(
        dataset="cifar10",
        image_size=32,
        width=32,
        zdim=8,
        enc_blocks="32x2,32d2,16x2,16d2,8x2,8d2,4x2,4d4,1x2",
        dec_blocks="1x1,4m1,4x2,8m4,8x2,16m8,16x2,32m16,32x2",
    ),
    # Our demo model: class-conditional MNIST digits padded to 32x32, one channel. Most latent
    # layers sit at 16x16 and below, where digits take shape; the two 32x32 layers add strokes'
    # detail. That keeps a pass cheap enough to batch well on a CPU (see model/bench.py).
    "mnist": dict(
        dataset="mnist",
        image_size=32,
        image_channels=1,
        width=64,
        zdim=8,
        num_mixtures=5,
        num_classes=10,
        class_dim=32,
        enc_blocks="32x2,32d2,16x3,16d2,8x3,8d2,4x3,4d4,1x2",
        dec_blocks="1x2,4m1,4x3,8m4,8x5,16m8,16x4,32m16,32x1",
    ),
}
