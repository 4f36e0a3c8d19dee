"""Very Deep VAE (Child 2021), state-dict compatible with openai/vdvae, with the sample-quality
techniques of Luhman & Luhman 2022. See README.md and conformance/CONTRACT.md for the API."""

from .checkpoint import CheckpointError, load_model
from .hparams import PRESETS, HParams, HParamsError
from .vae import VDVAE, Encoding, Reconstruction

__all__ = [
    "PRESETS",
    "VDVAE",
    "CheckpointError",
    "Encoding",
    "HParams",
    "HParamsError",
    "Reconstruction",
    "load_model",
]
