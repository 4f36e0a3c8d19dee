"""The Very Deep VAE: the official model plus class conditioning, guidance and super-resolution.

The calls every caller uses (the parity contract and the user-level API) are model.hierarchical's;
this module builds the network (encoder, decoder, output head, low-resolution encoder) and gives
the hooks those calls run on. tests/model/test_parity.py drives the contract against openai/vdvae.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from torch import nn

from .blocks import Block
from .decoder import Decoder
from .encoder import Encoder
from .heads import DmolHead, GaussianHead
from .hierarchical import HierarchicalVAE
from .hparams import HParams
from .lowres import LowResEncoder
from .noise import NoiseSource
from .options import LowRes, NoiseLevelSpec
from .sampling import SamplingDefaults
from .topdown import TopDown


class VDVAE(HierarchicalVAE):
    family: ClassVar[str] = "vdvae"
    source: ClassVar[str] = "openai/vdvae"

    def __init__(self, hp: HParams) -> None:
        super().__init__()
        self.hp = hp
        self.encoder = Encoder(hp)
        self.decoder = Decoder(hp)
        # Super-resolution models only: registered last, so a plain model's keys are the official ones.
        self.low_res_encoder = LowResEncoder(hp) if hp.low_res else None
        # What sample / reconstruct use for options a caller leaves out (config.json's "sampling").
        self.sampling = SamplingDefaults.for_model(hp)

    @property
    def device(self) -> torch.device:
        return self.decoder.gain.device

    @property
    def head(self) -> DmolHead | GaussianHead:
        return self.decoder.out_net

    def preprocess(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images (n, H, W, C) -> (encoder input, loss target in [-1, 1]), float32 NHWC."""
        self._check_images(x)
        p = self.hp.preprocessing
        x = x.to(self.device)
        inp = x.float() / 255.0 if p.unit_input else x.float()
        target = torch.floor(inp / 8.0) * 8.0 if p.low_bit else inp
        shift = torch.tensor(p.shift, dtype=torch.float32, device=x.device)
        scale = torch.tensor(p.scale, dtype=torch.float32, device=x.device)
        shift_loss = torch.tensor(p.shift_loss, dtype=torch.float32, device=x.device)
        scale_loss = torch.tensor(p.scale_loss, dtype=torch.float32, device=x.device)
        return (inp + shift) * scale, (target + shift_loss) * scale_loss

    def embed(self, labels: torch.Tensor | None) -> torch.Tensor | None:
        return self.decoder.embed(labels)

    def activations(self, x_in: torch.Tensor, cond: torch.Tensor | None) -> dict[int, torch.Tensor]:
        return self.encoder(x_in)  # the official encoder sees no label

    def top_down(self, n: int, **kwargs: Any) -> TopDown:
        return self.decoder.top_down(n, **kwargs)

    def low_res_features(
        self,
        low_res: LowRes,
        noise_level: NoiseLevelSpec,
        n: int,
        src: NoiseSource | None = None,
        image: torch.Tensor | None = None,
    ) -> dict[int, torch.Tensor] | None:
        """A super-resolution model's decoder features for n images (LowResEncoder.condition)."""
        if self.low_res_encoder is None:
            self._refuse_low_res(low_res, noise_level)
            return None
        return self.low_res_encoder.condition(low_res, noise_level, n, src, image, self.device)

    def residual_blocks(self) -> Iterator[nn.Module]:
        return (m for m in self.modules() if isinstance(m, Block))
