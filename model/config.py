"""What every family's configuration tells the rest of the project (model.hparams.HParams for
VDVAE, model.visual_vae.config.VisualVAEConfig for visual-vae): the service, the sampling defaults
and the shared calls read these and nothing else."""

from __future__ import annotations

from typing import Any, Protocol


class ModelConfig(Protocol):
    image_size: int
    image_channels: int
    zdim: int
    num_classes: int  # 0: unconditional; otherwise labels 0..num_classes - 1, null label num_classes
    low_res: int  # > 0: a super-resolution model conditioned on low_res x low_res images
    low_res_noise: float  # its default std of the noise on the [-1, 1] low-res input
    output_head: str  # "dmol" or "gaussian"
    dataset: str
    attention: str  # attention blocks per resolution, "RxN,..." ("" for none)

    @property
    def num_layers(self) -> int: ...

    @property
    def layer_resolutions(self) -> list[int]: ...  # resolution of each latent layer, top-down

    @property
    def image_dims(self) -> int: ...

    @property
    def conditional(self) -> bool: ...

    def to_dict(self) -> dict[str, Any]: ...
