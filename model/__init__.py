"""Hierarchical VAEs of two families: the Very Deep VAE (Child 2021), state-dict compatible with
openai/vdvae and with the sample-quality techniques of Luhman & Luhman 2022, and Luhman & Luhman's
own released models (tcl9876/visual-vae, in model.visual_vae).

What both families share (hierarchical: the contract and user-level calls; topdown, guidance,
noise, options, sampling, outputs, interpolation, heads, likelihoods, attention, config, classes),
the VDVAE network (hparams, blockstrings, presets, blocks, encoder, decoder, lowres, vae), the
families and their files (families, checkpoint, files, imageio), cascades of models (cascade) and
the inference form (inference). Training lives in `model.training`, command-line tools in
`model.tools`; nothing here imports either.

The names below load on first use, so that the torch-free modules (files, imageio) serve light
programs (the Python client, the `vdvae` command) without importing torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .checkpoint import CheckpointError, load_model
    from .hparams import HParams, HParamsError
    from .outputs import Encoding, Reconstruction, Stage
    from .presets import PRESETS
    from .vae import VDVAE
    from .visual_vae import VisualVAE, VisualVAEConfig, VisualVAEConfigError

# Public name -> the module that defines it.
_EXPORTS = {
    "PRESETS": ".presets",
    "VDVAE": ".vae",
    "VisualVAE": ".visual_vae",
    "VisualVAEConfig": ".visual_vae",
    "VisualVAEConfigError": ".visual_vae",
    "CheckpointError": ".checkpoint",
    "Encoding": ".outputs",
    "HParams": ".hparams",
    "HParamsError": ".hparams",
    "Reconstruction": ".outputs",
    "Stage": ".outputs",
    "load_model": ".checkpoint",
}
__all__ = [
    "PRESETS",
    "VDVAE",
    "CheckpointError",
    "Encoding",
    "HParams",
    "HParamsError",
    "Reconstruction",
    "Stage",
    "VisualVAE",
    "VisualVAEConfig",
    "VisualVAEConfigError",
    "load_model",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'model' has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value
