"""Very Deep VAE (Child 2021), state-dict compatible with openai/vdvae, with the sample-quality
techniques of Luhman & Luhman 2022.

The network (hparams, presets, blocks, encoder, decoder, heads, likelihoods, noise, options, vae,
outputs, interpolation), its files (checkpoint, files, imageio) and its inference form
(inference). Training lives in `model.training`, command-line tools in `model.tools`; nothing here
imports either.
"""

from .checkpoint import CheckpointError, load_model
from .hparams import HParams, HParamsError
from .outputs import Encoding, Reconstruction, Stage
from .presets import PRESETS
from .vae import VDVAE

__all__ = [
    "PRESETS",
    "VDVAE",
    "CheckpointError",
    "Encoding",
    "HParams",
    "HParamsError",
    "Reconstruction",
    "Stage",
    "load_model",
]
