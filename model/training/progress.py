"""Training feedback: the progress bar (tqdm), and the run's logs: the JSONL log always, TensorBoard
when asked for (`--tensorboard`)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from .tensorboard_log import TensorBoardLog


def progress_bar(total: int, initial: int = 0, enabled: bool = True, **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr: redrawn in place on a terminal, and at most every 30 s into a log
    file (nohup, a cluster job), whose record is the JSONL log."""
    tty = sys.stderr.isatty()
    return tqdm(
        total=total,
        initial=initial,
        disable=not enabled,
        dynamic_ncols=True,
        mininterval=0.1 if tty else 30.0,
        file=sys.stderr,
        **kwargs,
    )


class Progress:
    """The training run's bar (steps, loss, bits/dim, skips, rate, ETA) and its messages."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.bar: tqdm | None = None

    def start(self, total: int, step: int) -> None:
        self.bar = progress_bar(total, step, self.enabled, desc="train", unit="step")

    def update(self, step: int, **stats: float | int) -> None:
        if self.bar is not None:
            self.bar.set_postfix(stats, refresh=False)
            self.bar.update(step - self.bar.n)

    def message(self, text: str) -> None:
        if self.enabled:
            tqdm.write(text, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class JsonlLog:
    """Append-only JSON-lines log; on resume, rows logged after the checkpoint's step are dropped so
    the log matches the state training continues from."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path, self.enabled = path, enabled

    def truncate_after(self, step: int) -> None:
        if not self.enabled or not self.path.exists():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
            if row.get("step", 0) <= step:
                kept.append(line)
        self.path.write_text("".join(k + "\n" for k in kept))

    def write(self, kind: str, step: int, **fields: Any) -> None:
        if not self.enabled:
            return
        row = {"type": kind, "step": step, "time": round(time.time(), 3), **fields}
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")


class RunLogs:
    """Every log of a run, written together: log.jsonl, and TensorBoard's tensorboard/ on request.
    Only the main process writes (enabled)."""

    def __init__(self, out: Path, enabled: bool = True, tensorboard: bool = False) -> None:
        self.jsonl = JsonlLog(out / "log.jsonl", enabled)
        # Checked now, so a missing tensorboard package stops the run before any work.
        self.tensorboard = TensorBoardLog(out / "tensorboard") if tensorboard and enabled else None

    def truncate_after(self, step: int) -> None:
        """Drop what was logged after `step` (-1: everything): the run continues from there."""
        self.jsonl.truncate_after(step)
        if self.tensorboard is not None:
            self.tensorboard.open(purge_from=step + 1)

    def write(self, kind: str, step: int, **fields: Any) -> None:
        self.jsonl.write(kind, step, **fields)
        if self.tensorboard is not None:
            self.tensorboard.write(kind, step, **fields)

    def images(self, step: int, grids: dict[str, np.ndarray]) -> None:
        if self.tensorboard is not None:
            self.tensorboard.images(step, grids)

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


def rate_table(profile: dict) -> str:
    """One line per latent layer: its resolution and its mean KL in bits."""
    rows = [
        f"  layer {i:3d}  res {r:4d}  {b:9.3f}"
        for i, (r, b) in enumerate(zip(profile["layer_resolutions"], profile["rate_bits_per_layer"]))
    ]
    return "\n".join(rows)
