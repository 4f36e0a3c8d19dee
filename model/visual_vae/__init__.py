"""The second model family: the hierarchical VAE of Luhman & Luhman 2022 (tcl9876/visual-vae),
whose released CIFAR-10, ImageNet-32 and 32 -> 64 super-resolution weights load and sample here
exactly as in their code.

config (their config fields and presets), blocks, encoder (and the low-res U-Net), decoder (latent
layers and levels), vae (VisualVAE: the model, behind model.hierarchical's shared calls).
"""

from .config import VISUAL_VAE_PRESETS, VisualVAEConfig, VisualVAEConfigError
from .vae import VisualVAE

__all__ = ["VISUAL_VAE_PRESETS", "VisualVAE", "VisualVAEConfig", "VisualVAEConfigError"]
