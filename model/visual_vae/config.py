"""The architecture of a visual-vae model (Luhman & Luhman 2022, tcl9876/visual-vae), in the field
names of their config files' "model" section, plus the two numbers their code keeps elsewhere.

Their configs list levels from the highest resolution down: `nlayers[0]` latent layers at
`resolution`, `nlayers[1]` at half of it, and so on, where anything below 4 becomes 1 (their
`get_resolutions`: 32 -> 32, 16, 8, 4, 1). Every list field has one entry per level. Everything
is checked at construction, and an error names the field and what would be accepted.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..blockstrings import HParamsError
from ..sampling import SamplingDefaults

# The "model" fields of their config files, in their order.
MODEL_FIELDS = (
    "resolution",
    "c",
    "c_enc",
    "c_mult",
    "num_classes",
    "nlayers",
    "enc_nlayers",
    "num_attention",
    "num_final_blocks",
    "is_superres",
    "superres_nlayers",
    "zdim",
)
LIST_FIELDS = ("c_mult", "nlayers", "enc_nlayers", "num_attention")


class VisualVAEConfigError(HParamsError):
    """An invalid visual-vae configuration: the message names the field."""


def level_resolutions(resolution: int, levels: int) -> list[int]:
    """Resolution of each level, highest first: halving, with anything below 4 mapped to 1."""
    out, r = [], resolution
    for _ in range(levels):
        if r < 4:
            r = 1
        out.append(r)
        r //= 2
    return out


def evenly_spaced_indices(n: int, k: int) -> list[int]:
    """Their `get_evenly_spaced_indices`: round(n * i / (k + 1)) for i = 1..k, Python's round (half
    to even); which blocks of a level an attention layer follows."""
    return [round(n / (k + 1) * i) for i in range(1, k + 1)] if k else []


def evaluate_defaults(cfg: VisualVAEConfig) -> SamplingDefaults:
    """How their scripts/evaluate.py samples: temperature 1; a class-conditional base model with
    guidance (2, 4) (its --mean_scale/--var_scale defaults), a super-resolution model with (1, 1)
    (p_sample's defaults, which evaluate.py leaves), random classes (here: each image's label from
    its seed); unconditional models take no guidance (their p_sample fails on it)."""
    if not cfg.conditional:
        return SamplingDefaults(chosen_by="their scripts/evaluate.py: the prior at temperature 1")
    guidance = (1.0, 1.0) if cfg.is_superres else (2.0, 4.0)
    why = (
        "p_sample's defaults, as their evaluate.py calls the super-resolution model"
        if cfg.is_superres
        else ("their scripts/evaluate.py defaults --mean_scale 2.0 --var_scale 4.0")
    )
    return SamplingDefaults(temperature=1.0, guidance=guidance, label="seed", chosen_by=f"guidance {why}")


def default_c_aug(resolution: int) -> float:
    """The std of the noise their sampler adds to a super-resolution model's low-res input
    (hard-coded in their VAE.p_sample: 0.1 for a 64x64 model, else 0.15)."""
    return 0.1 if resolution == 64 else 0.15


@dataclass
class VisualVAEConfig:
    """One visual-vae model (defaults: their cifar10 config)."""

    resolution: int = 32  # height and width of the images
    c: int = 128  # decoder width at the image resolution (times c_mult[i] at level i)
    c_enc: int = 128  # encoder width at the image resolution
    c_mult: tuple[int, ...] = (1, 1, 1, 1, 1)  # width multiplier per level; c_mult[0] must be 1
    num_classes: int = 0  # > 0: class-conditional; label num_classes is the null label
    nlayers: tuple[int, ...] = (14, 10, 7, 5, 3)  # latent layers per level, highest resolution first
    enc_nlayers: tuple[int, ...] = (10, 8, 8, 6, 3)  # encoder residual blocks per level
    num_attention: tuple[int, ...] = (0, 0, 0, 0, 0)  # attention layers per level, evenly spaced
    num_final_blocks: int = 3  # residual blocks between the last latent layer and the output
    is_superres: bool = False  # conditioned on the image at the lowest level's resolution
    superres_nlayers: tuple[int, ...] | None = None  # the low-res U-Net's blocks per level
    zdim: int = 16  # channels of each latent layer
    # Their "training" section: the width of the data distribution in the reconstruction loss.
    sigma_q: float = 0.025
    # Std of the noise on a super-resolution model's [-1, 1] low-res input when sampling (their
    # sampler's c_aug); None: their rule, default_c_aug(resolution).
    c_aug: float | None = None
    dataset: str = ""  # what the model was trained on, for people (their "dataset_name")

    # Constants every family's configuration offers (model.config.ModelConfig).
    image_channels: int = field(default=3, init=False)
    output_head: str = field(default="gaussian", init=False)

    def __post_init__(self) -> None:
        for name in LIST_FIELDS:
            setattr(self, name, self._int_list(name, getattr(self, name)))
        if self.superres_nlayers is not None:
            self.superres_nlayers = self._int_list("superres_nlayers", self.superres_nlayers)
        self._validate()

    # ---- derived quantities ----------------------------------------------------------------

    @property
    def levels(self) -> int:
        return len(self.nlayers)

    @property
    def resolutions(self) -> list[int]:
        """Resolution of each level, highest first."""
        return level_resolutions(self.resolution, self.levels)

    @property
    def widths(self) -> list[int]:
        """Decoder width of each level, highest resolution first."""
        return [self.c * m for m in self.c_mult]

    @property
    def enc_widths(self) -> list[int]:
        return [self.c_enc * m for m in self.c_mult]

    @property
    def image_size(self) -> int:
        return self.resolution

    @property
    def num_layers(self) -> int:
        return sum(self.nlayers)

    @property
    def layer_resolutions(self) -> list[int]:
        """Resolution of each latent layer, top-down (lowest resolution first)."""
        return [r for r, k in zip(reversed(self.resolutions), reversed(self.nlayers)) for _ in range(k)]

    @property
    def image_dims(self) -> int:
        return self.resolution * self.resolution * self.image_channels

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    @property
    def low_res(self) -> int:
        """A super-resolution model's input resolution (their dataset's `lower_res`), else 0."""
        return self.resolutions[-1] if self.is_superres else 0

    @property
    def low_res_noise(self) -> float:
        return default_c_aug(self.resolution) if self.c_aug is None else self.c_aug

    @property
    def attention(self) -> str:
        """The decoder's attention layers per resolution, as "RxN,..." ("" for none)."""
        return ",".join(f"{r}x{k}" for r, k in zip(self.resolutions, self.num_attention) if k)

    # ---- validation ------------------------------------------------------------------------

    @staticmethod
    def _int_list(name: str, value: Any) -> tuple[int, ...]:
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise VisualVAEConfigError(f"{name} must be a list of integers, one per level, got {value!r}")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise VisualVAEConfigError(f"{name} must be a list of integers, got {list(value)!r}")
        return tuple(value)

    def _validate(self) -> None:
        for name in ("resolution", "c", "c_enc", "zdim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise VisualVAEConfigError(f"{name} must be a positive integer, got {value!r}")
        for name in ("num_classes", "num_final_blocks"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise VisualVAEConfigError(f"{name} must be an integer >= 0, got {value!r}")
        if not isinstance(self.is_superres, bool):
            raise VisualVAEConfigError(f"is_superres must be true or false, got {self.is_superres!r}")
        if self.levels < 1:
            raise VisualVAEConfigError("nlayers must list at least one level")
        for name in LIST_FIELDS[:1] + LIST_FIELDS[2:]:
            if len(getattr(self, name)) != self.levels:
                raise VisualVAEConfigError(
                    f"{name} has {len(getattr(self, name))} entries but nlayers has {self.levels}: "
                    "every list gives one value per level, highest resolution first"
                )
        if any(k < 1 for k in self.nlayers) or any(k < 1 for k in self.enc_nlayers):
            raise VisualVAEConfigError(
                f"every level needs latent layers and encoder blocks: nlayers {list(self.nlayers)}, "
                f"enc_nlayers {list(self.enc_nlayers)}"
            )
        if any(m < 1 for m in self.c_mult):
            raise VisualVAEConfigError(f"c_mult entries must be >= 1, got {list(self.c_mult)}")
        if self.c_mult[0] != 1:
            raise VisualVAEConfigError(
                f"c_mult[0] must be 1: the output projection reads c = {self.c} channels at the image "
                f"resolution, got c_mult {list(self.c_mult)}"
            )
        if any(k < 0 for k in self.num_attention):
            raise VisualVAEConfigError(f"num_attention entries must be >= 0, got {list(self.num_attention)}")
        if self.resolution & (self.resolution - 1):
            raise VisualVAEConfigError(f"resolution must be a power of 2, got {self.resolution}")
        res = self.resolutions
        if any(a <= b for a, b in itertools.pairwise(res)):
            raise VisualVAEConfigError(
                f"resolution {self.resolution} gives levels at {res}: with {self.levels} levels two of "
                "them share a resolution (below 4 every level is 1); use fewer levels"
            )
        if self.is_superres:
            if not self.superres_nlayers or any(k < 1 for k in self.superres_nlayers):
                raise VisualVAEConfigError(
                    "superres_nlayers must list the low-res U-Net's blocks per level (e.g. [2, 2, 2]) "
                    "for a super-resolution model"
                )
            if self.levels < 2:
                raise VisualVAEConfigError("a super-resolution model needs at least two levels in nlayers")
            lowest = res[-1]
            if lowest >> (len(self.superres_nlayers) - 1) < 1 or lowest % (
                1 << (len(self.superres_nlayers) - 1)
            ):
                raise VisualVAEConfigError(
                    f"superres_nlayers has {len(self.superres_nlayers)} levels, too many to halve the "
                    f"{lowest}x{lowest} low-res input between them"
                )
        if not (isinstance(self.sigma_q, int | float) and self.sigma_q > 0):
            raise VisualVAEConfigError(f"sigma_q must be positive, got {self.sigma_q!r}")
        if self.c_aug is not None and not (math.isfinite(self.c_aug) and self.c_aug >= 0):
            raise VisualVAEConfigError(f"c_aug must be finite and >= 0, got {self.c_aug!r}")

    # ---- construction and serialisation ------------------------------------------------------

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> VisualVAEConfig:
        """Their config as a dict: the "model" section (their field names; all required), optional
        "training" (sigma_q), "sampling" (c_aug) and "dataset" (dataset_name); other sections and
        fields of those sections (learning rates, data paths...) are ignored."""
        if not isinstance(config, Mapping) or not isinstance(config.get("model"), Mapping):
            raise VisualVAEConfigError(
                'a visual-vae config is an object with a "model" section (their config\'s model fields)'
            )
        m = config["model"]
        missing = [f for f in MODEL_FIELDS if f not in m]
        unknown = sorted(set(m) - set(MODEL_FIELDS))
        if missing or unknown:
            raise VisualVAEConfigError(
                f"model section: missing {missing or 'nothing'}, unknown {unknown or 'nothing'}; "
                f"expected the fields {list(MODEL_FIELDS)}"
            )
        kwargs = {f: m[f] for f in MODEL_FIELDS}
        training = config.get("training") or {}
        if training.get("sigma_q") is not None:
            kwargs["sigma_q"] = training["sigma_q"]
        sampling = config.get("sampling") or {}
        if sampling.get("c_aug") is not None:
            kwargs["c_aug"] = sampling["c_aug"]
        dataset = config.get("dataset") or {}
        if dataset.get("dataset_name"):
            kwargs["dataset"] = str(dataset["dataset_name"])
        return cls(**kwargs)

    @classmethod
    def preset(cls, name: str) -> VisualVAEConfig:
        """Their three released configs: cifar10, imagenet32, imagenet64 (the 32 -> 64 SR model)."""
        try:
            return cls(**VISUAL_VAE_PRESETS[name])
        except KeyError:
            raise VisualVAEConfigError(
                f"unknown visual-vae preset {name!r}; known: {', '.join(VISUAL_VAE_PRESETS)}"
            ) from None

    def to_dict(self) -> dict[str, Any]:
        """The fields (lists as lists), as a model folder's config.json holds them."""
        out = {}
        for f in dataclasses.fields(self):
            if f.init:
                v = getattr(self, f.name)
                out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VisualVAEConfig:
        known = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(d) - known)
        if unknown:
            raise VisualVAEConfigError(f"unknown visual-vae field(s) {unknown}; known: {sorted(known)}")
        return cls(**d)

    def replace(self, **changes: Any) -> VisualVAEConfig:
        return VisualVAEConfig.from_dict({**self.to_dict(), **changes})


# Their config/cifar10.py, config/imagenet32.py and config/imagenet64.py (model sections), with the
# dataset each was trained on.
VISUAL_VAE_PRESETS: dict[str, dict[str, Any]] = {
    "cifar10": dict(dataset="cifar10"),
    "imagenet32": dict(
        dataset="imagenet32",
        c_mult=(1, 2, 2, 2, 2),
        num_classes=1000,
        nlayers=(15, 16, 10, 8, 8),
        enc_nlayers=(11, 12, 9, 7, 6),
        num_attention=(3, 3, 0, 0, 0),
    ),
    "imagenet64": dict(
        dataset="imagenet64",
        resolution=64,
        c_mult=(1, 2),
        num_classes=1000,
        nlayers=(20, 20),
        enc_nlayers=(14, 14),
        num_attention=(0, 4),
        is_superres=True,
        superres_nlayers=(2, 2, 2),
    ),
}
