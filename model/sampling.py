"""A model's sampling defaults: the temperature, guidance and label rule a request gets when it
leaves them out.

They live in the model folder's config.json as its "sampling" section, e.g.

    "sampling": {"temperature": 0.8, "guidance": {"mean": 1.0, "variance": 1.0}, "label": "seed",
                 "chosen_by": "..."}

and apply to the user-level calls only (`VDVAE.sample`, the service's /sample and /decode), never
to the parity contract's calls (`decode`, `elbo`, `encode`, ...), which keep their explicit
arguments. `VDVAE.sampling_options` is the one place that fills in what a caller left out.

The label rule "seed" gives image i the label `seed_i mod num_classes`: a function of the image's
own seed only, so an image is reproducible from its seed and independent of its batch, and any
num_classes consecutive seeds cover every class once. "null" keeps the unconditional prior.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .config import ModelConfig

LABEL_RULES = ("seed", "null")
# The largest seed of an image: seeds become torch.Generator seeds (int64). Declared here, beside
# the seed label rule and without torch, so the service checks requests without importing torch.
MAX_SEED = 2**63 - 1


class Default:
    """The type of DEFAULT: "not given, use the model's sampling defaults"."""

    _instance: Default | None = None

    def __new__(cls) -> Default:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT = Default()


def label_from_seed(seed: int, num_classes: int) -> int:
    """The label an image drawn with `seed` gets under the "seed" rule."""
    return int(seed) % num_classes


@dataclass(frozen=True)
class SamplingDefaults:
    temperature: float = 1.0
    guidance: tuple[float, float] | None = None  # (w_mean, w_var); None: plain conditional sampling
    label: str = "null"  # "seed" or "null" (see the module docstring)
    chosen_by: str = ""  # how these values were chosen, for people reading /v1/models

    @classmethod
    def for_model(cls, hp: ModelConfig) -> SamplingDefaults:
        """What a model without a "sampling" section gets: the prior as trained (temperature 1, no
        guidance), and for a class-conditional model each image's label from its seed."""
        return cls(
            label="seed" if hp.conditional else "null",
            chosen_by="not tuned: the prior as trained (temperature 1, no guidance)",
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], hp: ModelConfig) -> SamplingDefaults:
        """Parse and check a config.json "sampling" section against the model; ValueError says why."""
        unknown = set(d) - {"temperature", "guidance", "label", "chosen_by"}
        if unknown:
            raise ValueError(f"unknown sampling fields: {', '.join(sorted(unknown))}")
        base = cls.for_model(hp)
        t = d.get("temperature", base.temperature)
        if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) or t < 0:
            raise ValueError(f"sampling.temperature must be a finite number >= 0, got {t!r}")
        g = d.get("guidance")
        if g is not None:
            if not isinstance(g, Mapping) or set(g) - {"mean", "variance"}:
                raise ValueError('sampling.guidance must be null or {"mean": w, "variance": w}')
            g = (float(g.get("mean", 0.0)), float(g.get("variance", 0.0)))
            if not all(math.isfinite(w) and w >= 0 for w in g):
                raise ValueError("sampling.guidance weights must be finite and >= 0")
            if not hp.conditional:
                raise ValueError("sampling.guidance needs a class-conditional model")
        label = d.get("label", base.label)
        if label not in LABEL_RULES:
            raise ValueError(f"sampling.label must be one of {', '.join(LABEL_RULES)}, got {label!r}")
        if label == "seed" and not hp.conditional:
            raise ValueError('sampling.label "seed" needs a class-conditional model')
        return cls(float(t), g, label, str(d.get("chosen_by", "")))

    def to_dict(self) -> dict[str, Any]:
        """The config.json / /v1/models form."""
        g = None if self.guidance is None else {"mean": self.guidance[0], "variance": self.guidance[1]}
        return {
            "temperature": self.temperature,
            "guidance": g,
            "label": self.label,
            "chosen_by": self.chosen_by,
        }

    def options(
        self,
        seeds: Sequence[int],
        num_classes: int,
        temperature: Any = DEFAULT,
        labels: Any = DEFAULT,
        guidance: Any = DEFAULT,
    ) -> dict[str, Any]:
        """The caller's temperature, labels and guidance, with each DEFAULT replaced by these
        defaults: labels by the label rule applied to each image's seed (a list of ints, or None for
        the null label). Explicit values, None included, pass through unchanged."""
        if labels is DEFAULT:
            rule = self.label if num_classes else "null"
            labels = [label_from_seed(s, num_classes) for s in seeds] if rule == "seed" else None
        return {
            "temperature": self.temperature if temperature is DEFAULT else temperature,
            "labels": labels,
            "guidance": self.guidance if guidance is DEFAULT else guidance,
        }
