"""TensorBoard logging of a training run (`--tensorboard`): losses, bits per dim, skipped updates,
learning rate, throughput, test bits per dim, and the sample grids, under <run>/tensorboard.

TensorBoard is an optional extra (`pip install 'vdvae-serve[tensorboard]'`), imported only when a
run asks for it, so the service's dependencies stay small.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

# The fields of each log.jsonl row kind that become TensorBoard scalars (as "kind/field").
SCALARS = {
    "train": ("loss", "bpd", "distortion", "rate", "grad_norm", "lr", "skipped_total", "images_per_s"),
    "eval": ("test_bpd",),
}


class MissingExtra(RuntimeError):
    """An optional dependency that the asked-for feature needs is not installed."""


class TensorBoardLog:
    """Event files for TensorBoard; `open` starts writing (after a resume: past the checkpoint)."""

    def __init__(self, folder: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise MissingExtra(
                "--tensorboard needs the tensorboard package: pip install 'vdvae-serve[tensorboard]' "
                f"(or pip install tensorboard); {e}"
            ) from None
        self.folder = folder
        self._writer_class = SummaryWriter
        self.writer: Any = None

    def open(self, purge_from: int) -> None:
        """Start writing; events of an earlier run of this folder at steps >= purge_from are dropped
        (TensorBoard's purge_step), as log.jsonl drops its rows past the checkpoint."""
        self.writer = self._writer_class(log_dir=str(self.folder), purge_step=purge_from)

    def write(self, kind: str, step: int, **fields: Any) -> None:
        if self.writer is None:
            return
        for name in SCALARS.get(kind, ()):
            if isinstance(fields.get(name), int | float):
                self.writer.add_scalar(f"{kind}/{name}", fields[name], step)
        if kind == "config":
            self.writer.add_text(
                "config", "```\n" + json.dumps(fields, indent=2, default=str) + "\n```", step
            )

    def images(self, step: int, grids: dict[str, np.ndarray]) -> None:
        """uint8 (H, W, C) grids, one image series each ("samples/<name>")."""
        if self.writer is None:
            return
        for name, grid in grids.items():
            self.writer.add_image(f"samples/{name}", grid, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
