"""The two model families, and what loading and converting their checkpoints needs of each.

A model folder's config.json names its family ("family"; folders without it are VDVAE ones, the
format's first family). A released file is recognised by its keys: openai/vdvae state dicts have
`decoder.dec_blocks.*`, visual-vae ones `layer_list.*` and `outproj.*`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from .hierarchical import HierarchicalVAE
from .hparams import HParams
from .presets import PRESETS
from .sampling import SamplingDefaults
from .vae import VDVAE
from .visual_vae import VISUAL_VAE_PRESETS, VisualVAE, VisualVAEConfig
from .visual_vae.config import evaluate_defaults


@dataclass(frozen=True)
class Family:
    name: str  # config.json's "family", `vdvae convert --family`
    source: str  # the code whose layout and numbers the family reproduces
    paper: str
    model: type[HierarchicalVAE]
    config_from_dict: Callable[[Mapping[str, Any]], Any]  # config.json's "hparams"
    preset: Callable[[str], Any]
    presets: tuple[str, ...]
    released_files: str  # how the authors name their files, for messages
    default_sampling: Callable[[Any], SamplingDefaults]  # for a model without a "sampling" section
    published: dict[str, str] = field(default_factory=dict)  # preset -> what the authors report

    def build(self, config: Any) -> HierarchicalVAE:
        return self.model(config)


VDVAE_FAMILY = Family(
    name="vdvae",
    source="openai/vdvae",
    paper="Child 2021, Very Deep VAEs Generalize Autoregressive Models and Can Outperform Them on "
    "Images (arXiv:2011.10650)",
    model=VDVAE,
    config_from_dict=HParams.from_dict,
    preset=HParams.preset,
    presets=tuple(PRESETS),
    released_files="*-model-ema.th / *-model.th",
    default_sampling=SamplingDefaults.for_model,
    # Test NLL of the released models, from the openai/vdvae README.
    published={
        "cifar10": "2.87 bits/dim (test)",
        "imagenet32": "3.80 bits/dim (test)",
        "imagenet64": "3.52 bits/dim (test)",
        "ffhq256": "0.61 bits/dim (test)",
        "ffhq1024": "2.42 bits/dim (test)",
    },
)

VISUAL_VAE_FAMILY = Family(
    name="visual-vae",
    source="tcl9876/visual-vae",
    paper="Luhman & Luhman 2022, Optimizing Hierarchical Image VAEs for Sample Quality (arXiv:2210.10205)",
    model=VisualVAE,
    config_from_dict=VisualVAEConfig.from_dict,
    preset=VisualVAEConfig.preset,
    presets=tuple(VISUAL_VAE_PRESETS),
    released_files="cifar10_ema_weights.pt / i32_ema_weights.pt / i64_ema_weights.pt",
    default_sampling=evaluate_defaults,
    # From their README.
    published={
        "cifar10": "FID 20.82 on CIFAR-10",
        "imagenet32": "FID 17.5 on ImageNet-64 as the base of the 32 -> 64 cascade with imagenet64",
        "imagenet64": "FID 17.5 on ImageNet-64 as the super-resolution stage after imagenet32",
    },
)

FAMILIES: dict[str, Family] = {f.name: f for f in (VDVAE_FAMILY, VISUAL_VAE_FAMILY)}


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; known: {', '.join(FAMILIES)}") from None


def family_of_state_dict(sd: Mapping[str, torch.Tensor]) -> Family | None:
    """The family whose layout a state dict has, by its keys (None: neither)."""
    if any(k.startswith("decoder.dec_blocks.") for k in sd):
        return VDVAE_FAMILY
    if "outproj.weight" in sd and any(k.startswith("layer_list.") for k in sd):
        return VISUAL_VAE_FAMILY
    return None
