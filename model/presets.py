"""Named recipes: each preset's architecture (HParams fields) beside its training defaults
(TrainConfig fields of model.training), as openai/vdvae's hps.py keeps a dataset's recipe together.

The official presets carry the official values (architecture and hps.py training settings); `tiny`
is the official test harness's small model and `mnist` is our demo model. A field a preset leaves
out takes the dataclass default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Preset:
    hparams: dict[str, Any]  # HParams fields
    training: dict[str, Any] = field(default_factory=dict)  # model.training.TrainConfig fields


CIFAR10_ENC = "32x11,32d2,16x6,16d2,8x6,8d2,4x3,4d4,1x3"
CIFAR10_DEC = "1x1,4m1,4x2,8m4,8x5,16m8,16x10,32m16,32x21"

# What the digit presets share: one channel, ten classes, the demo model's widths.
MNIST_ARCHITECTURE = dict(
    dataset="mnist", image_channels=1, width=64, zdim=8, num_mixtures=5, num_classes=10, class_dim=32
)
# The bundled weights/mnist recipe, shared by the digit presets.
MNIST_TRAINING = dict(
    batch_size=32,
    lr=1e-3,
    ema_rate=0.999,
    grad_clip=200.0,
    skip_threshold=1000.0,
    lr_schedule="cosine",
    min_lr=1e-4,
    steps=12000,
)

PRESETS: dict[str, Preset] = {
    "cifar10": Preset(
        hparams=dict(
            dataset="cifar10",
            image_size=32,
            width=384,
            zdim=16,
            enc_blocks=CIFAR10_ENC,
            dec_blocks=CIFAR10_DEC,
        ),
        training=dict(batch_size=16, lr=2e-4, ema_rate=0.9999, grad_clip=200.0, skip_threshold=400.0),
    ),
    "imagenet32": Preset(
        hparams=dict(
            dataset="imagenet32",
            image_size=32,
            width=512,
            zdim=16,
            enc_blocks="32x15,32d2,16x9,16d2,8x8,8d2,4x6,4d4,1x6",
            dec_blocks="1x2,4m1,4x4,8m4,8x9,16m8,16x19,32m16,32x40",
        ),
        training=dict(batch_size=8, lr=1.5e-4, ema_rate=0.999, grad_clip=200.0, skip_threshold=300.0),
    ),
    "imagenet64": Preset(
        hparams=dict(
            dataset="imagenet64",
            image_size=64,
            width=512,
            zdim=16,
            enc_blocks="64x11,64d2,32x20,32d2,16x9,16d2,8x8,8d2,4x7,4d4,1x5",
            dec_blocks="1x2,4m1,4x3,8m4,8x7,16m8,16x15,32m16,32x31,64m32,64x12",
        ),
        training=dict(batch_size=4, lr=1.5e-4, ema_rate=0.999, grad_clip=220.0, skip_threshold=380.0),
    ),
    "ffhq256": Preset(
        hparams=dict(
            dataset="ffhq_256",
            image_size=256,
            width=512,
            zdim=16,
            enc_blocks="256x3,256d2,128x8,128d2,64x12,64d2,32x17,32d2,16x7,16d2,8x5,8d2,4x5,4d4,1x4",
            dec_blocks="1x2,4m1,4x3,8m4,8x4,16m8,16x9,32m16,32x21,64m32,64x13,128m64,128x7,256m128",
        ),
        training=dict(batch_size=1, lr=1.5e-4, ema_rate=0.999, grad_clip=130.0, skip_threshold=180.0),
    ),
    "ffhq1024": Preset(
        hparams=dict(
            dataset="ffhq_1024",
            image_size=1024,
            width=16,
            zdim=16,
            num_mixtures=2,
            custom_width_str="512:32,256:64,128:512,64:512,32:512,16:512,8:512,4:512,1:512",
            enc_blocks="1024x1,1024d2,512x3,512d2,256x5,256d2,128x7,128d2,64x10,64d2,32x14,32d2,16x7,"
            "16d2,8x5,8d2,4x5,4d4,1x4",
            dec_blocks="1x2,4m1,4x3,8m4,8x4,16m8,16x9,32m16,32x20,64m32,64x14,128m64,128x7,256m128,"
            "256x2,512m256,1024m512",
        ),
        training=dict(batch_size=1, lr=7e-5, ema_rate=0.999, grad_clip=360.0, skip_threshold=500.0),
    ),
    # The official test harness's TINY model (140,924 parameters): fast enough for unit tests.
    "tiny": Preset(
        hparams=dict(
            dataset="cifar10",
            image_size=32,
            width=32,
            zdim=8,
            enc_blocks="32x2,32d2,16x2,16d2,8x2,8d2,4x2,4d4,1x2",
            dec_blocks="1x1,4m1,4x2,8m4,8x2,16m8,16x2,32m16,32x2",
        ),
        training=dict(batch_size=8, lr=2e-4, ema_rate=0.999, grad_clip=200.0, skip_threshold=400.0),
    ),
    # Our demo model: class-conditional MNIST digits padded to 32x32, one channel. Most latent
    # layers sit at 16x16 and below, where digits take shape; the two 32x32 layers add strokes'
    # detail. That keeps a pass cheap enough to batch well on a CPU (model.tools.bench).
    # Its training values are the bundled weights/mnist recipe.
    "mnist": Preset(
        hparams=dict(
            MNIST_ARCHITECTURE,
            image_size=32,
            enc_blocks="32x2,32d2,16x3,16d2,8x3,8d2,4x3,4d4,1x2",
            dec_blocks="1x2,4m1,4x3,8m4,8x5,16m8,16x4,32m16,32x1",
        ),
        # The ablation of the bundled model (weights/mnist/README.md): the information schedule gave
        # the lowest digit FID at the DMoL head's bits per dim; the Gaussian head did not beat it by
        # more than seed noise and cost 1.9x the bits per dim.
        training=dict(MNIST_TRAINING, kl_schedule="shifted_exp"),
    ),
    # A cascade of the demo digits (Luhman & Luhman 2022's cascade, small): a 16x16 base model of
    # the digits average-pooled to 16x16 (the mnist architecture without its 32x32 level), and a
    # 16 -> 32 super-resolution model whose decoder starts at 16x16 from the encoded low-res digit,
    # trained with the resolution-proportional KL schedule. Training values: the mnist recipe.
    "mnist16": Preset(
        hparams=dict(
            MNIST_ARCHITECTURE,
            image_size=16,
            enc_blocks="16x3,16d2,8x3,8d2,4x3,4d4,1x2",
            dec_blocks="1x2,4m1,4x3,8m4,8x5,16m8,16x4",
        ),
        training=dict(MNIST_TRAINING, data_pool=True),
    ),
    "mnist16to32": Preset(
        hparams=dict(
            MNIST_ARCHITECTURE,
            image_size=32,
            low_res=16,
            enc_blocks="32x2,32d2,16x3",
            dec_blocks="16x4,32m16,32x2",
        ),
        training=dict(MNIST_TRAINING, kl_schedule="constant_per"),
    ),
}
