"""The judge: a small CNN classifier whose penultimate layer is the feature space of the digit FID.

    python -m model.training.evaluation.judge --data mnist --out weights/judges/mnist.safetensors

It is trained by our own code on the training split of the data (the same split the VAE trains
on), so a sample-quality figure needs no downloaded network. The file is one safetensors with its
architecture, training command and test accuracy in the metadata; its card (README.md next to it)
says the same for people. For RGB data the same command trains a judge on your images (labels come
from class subfolders); an Inception FID, comparable with published figures, needs Inception
weights, which this project does not download.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ...bundled import bundled_weights
from ...files import atomic_write
from ..data import DataError, ImageSet, load_split

JUDGE_FORMAT = "vdvae-serve-judge/1"
# The judge trained on the demo digits, shipped with the weights (its folder has no config.json, so
# the service never tries to serve it as a VAE).
BUNDLED_JUDGE = bundled_weights() / "judges" / "mnist.safetensors"


class JudgeError(ValueError):
    """A judge file that cannot be used; the message says why."""


@dataclass(frozen=True)
class JudgeConfig:
    image_size: int = 32
    image_channels: int = 1
    num_classes: int = 10
    width: int = 32  # channels of the first stage; doubled at each of the three stages
    features: int = 128  # the penultimate layer: the FID's feature space


class Judge(nn.Module):
    """Three conv stages (32, 64, 128 channels at 32, 16, 8 px), global average pooling, a 128-d
    feature layer, a linear classifier. uint8 NHWC in, like the VAE."""

    def __init__(self, cfg: JudgeConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c, w = cfg.image_channels, cfg.width

        def stage(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
                nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
            )

        self.stages = nn.ModuleList([stage(c, w), stage(w, 2 * w), stage(2 * w, 4 * w)])
        self.feature = nn.Linear(4 * w, cfg.features)
        self.classifier = nn.Linear(cfg.features, cfg.num_classes)

    @staticmethod
    def prepare(x: torch.Tensor) -> torch.Tensor:
        """uint8 (n, H, W, C) -> float (n, C, H, W) in [-1, 1]."""
        return x.permute(0, 3, 1, 2).float() / 127.5 - 1.0

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(n, features): the penultimate layer (after its ReLU), for prepared float input."""
        h = x
        for i, stage in enumerate(self.stages):
            h = stage(h if i == 0 else F.max_pool2d(h, 2))
        return F.relu(self.feature(h.mean(dim=(2, 3))))  # (n, 4w) -> (n, features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (n, num_classes) for prepared float input."""
        return self.classifier(self.features(x))

    @torch.inference_mode()
    def embed(self, images: torch.Tensor, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images -> (features (n, F), class probabilities (n, K)), float64 on the CPU."""
        self.eval()
        feats, probs = [], []
        for start in range(0, len(images), batch_size):
            f = self.features(self.prepare(torch.as_tensor(images[start : start + batch_size])))
            feats.append(f.double())
            probs.append(self.classifier(f).softmax(dim=1).double())
        return torch.cat(feats), torch.cat(probs)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def shifted(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Each image moved by up to max_shift pixels in x and y (zero fill): cheap augmentation."""
    n, _, h, w = x.shape
    p = max_shift
    padded = F.pad(x, (p, p, p, p), value=-1.0)  # -1 is black after prepare()
    dy, dx = torch.randint(0, 2 * p + 1, (2, n), generator=gen).tolist()
    return torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])


def train_judge(
    train: ImageSet, epochs: int = 12, batch_size: int = 64, lr: float = 2e-3, seed: int = 0
) -> Judge:
    """A judge trained on `train` (labelled) with Adam, cosine decay and random shifts of 2 px."""
    if train.labels is None:
        raise DataError("a judge needs labelled data: one subfolder per class")
    _, h, _, c = train.images.shape
    torch.manual_seed(seed)
    judge = Judge(JudgeConfig(image_size=h, image_channels=c, num_classes=train.num_classes))
    x_all = Judge.prepare(torch.from_numpy(np.ascontiguousarray(train.images)))
    y_all = torch.from_numpy(train.labels)
    steps = epochs * (len(x_all) // batch_size)
    opt = torch.optim.Adam(judge.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    judge.train()
    for _ in range(epochs):
        order = torch.randperm(len(x_all), generator=gen)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            idx = order[start : start + batch_size]
            loss = F.cross_entropy(judge(shifted(x_all[idx], 2, gen)), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return judge.eval()


def accuracy(judge: Judge, data: ImageSet) -> float:
    _, probs = judge.embed(torch.from_numpy(np.ascontiguousarray(data.images)))
    return (probs.argmax(dim=1).numpy() == data.labels).mean().item()


# --------------------------------------------------------------------------------------------
# The file
# --------------------------------------------------------------------------------------------


def save_judge(judge: Judge, path: str | Path, info: dict) -> Path:
    """One safetensors file: the weights, and in its metadata the config and `info` (JSON)."""
    sd = {k: v.detach().cpu().contiguous() for k, v in judge.state_dict().items()}
    meta = {"format": JUDGE_FORMAT, "config": json.dumps(asdict(judge.cfg)), "info": json.dumps(info)}
    atomic_write(path, lambda tmp: save_file(sd, tmp, metadata=meta))
    return Path(path)


def load_judge(path: str | Path) -> tuple[Judge, dict]:
    """A judge and its info (training command, data, test accuracy), or JudgeError saying why not."""
    path = Path(path)
    if not path.is_file():
        raise JudgeError(
            f"no judge file at {path}: "
            f"train one with `python -m model.training.evaluation.judge --data ... --out {path}`"
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            sd = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except Exception as e:
        raise JudgeError(f"{path} is not a readable safetensors file: {e}") from None
    if meta.get("format") != JUDGE_FORMAT:
        raise JudgeError(
            f"{path} is not a judge file (format {meta.get('format')!r}, expected {JUDGE_FORMAT})"
        )
    judge = Judge(JudgeConfig(**json.loads(meta["config"])))
    try:
        judge.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise JudgeError(f"{path}: weights do not fit its config: {e}") from None
    return judge.eval().requires_grad_(False), json.loads(meta.get("info", "{}"))


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m model.training.evaluation.judge",
        description="Train the judge (feature network of the digit FID and label classifier) on the "
        "training split of labelled data, and report its accuracy on the test split.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--data", default="mnist", help="'mnist' or a folder with one subfolder per class")
    p.add_argument("--data-format", default="auto", help="auto, mnist, folder, cifar10 or npy")
    p.add_argument("--test-data", default=None, help="separate test folder (else the data's own split)")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(BUNDLED_JUDGE), help="the judge file to write")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        splits = {
            s: load_split(args.data, s, args.image_size, args.channels, args.data_format, args.test_data)
            for s in ("train", "test")
        }
        started = time.monotonic()
        judge = train_judge(splits["train"], epochs=args.epochs, seed=args.seed)
        elapsed = time.monotonic() - started
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    argv = sys.argv[1:] if argv is None else argv
    info = {
        "command": "python -m model.training.evaluation.judge " + shlex.join(argv),
        "data": args.data,
        "train_images": len(splits["train"]),
        "test_images": len(splits["test"]),
        "train_accuracy": round(accuracy(judge, splits["train"]), 4),
        "test_accuracy": round(accuracy(judge, splits["test"]), 4),
        "epochs": args.epochs,
        "seed": args.seed,
        "train_seconds": round(elapsed, 1),
        "torch": torch.__version__,
    }
    save_judge(judge, args.out, info)
    print(json.dumps({"judge": args.out, **info}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
