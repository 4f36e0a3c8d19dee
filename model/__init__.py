"""Very Deep VAE (Child 2021), state-dict compatible with openai/vdvae, with the sample-quality
techniques of Luhman & Luhman 2022.

The network (hparams, blockstrings, presets, blocks, attention, encoder, decoder, lowres, heads,
likelihoods, noise, options, sampling, vae, outputs, interpolation), cascades of models (cascade),
its files (checkpoint, files, imageio) and its inference form (inference). Training lives in
`model.training`, command-line tools in `model.tools`; nothing here imports either.

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
    from .visual_vae import VisualVAE, VisualVAEConfig

# Public name -> the module that defines it.
_EXPORTS = {
    "PRESETS": ".presets",
    "VDVAE": ".vae",
    "VisualVAE": ".visual_vae",
    "VisualVAEConfig": ".visual_vae",
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
    "load_model",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'model' has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value
