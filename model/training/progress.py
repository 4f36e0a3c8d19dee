"""Training feedback: a one-line progress display and the JSONL log."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TextIO


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}"


class Progress:
    """Redraws one status line on a terminal; prints a line every `every` steps otherwise."""

    def __init__(
        self, total: int, every: int = 50, stream: TextIO | None = None, enabled: bool = True
    ) -> None:
        self.total, self.every, self.enabled = total, max(1, every), enabled
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def update(self, step: int, elapsed: float, steps_this_run: int, **stats) -> None:
        if not self.enabled or (not self.tty and step % self.every and step != self.total):
            return
        rate = steps_this_run / elapsed if elapsed > 0 else 0.0
        eta = (self.total - step) / rate if rate > 0 else 0.0
        parts = [f"step {step}/{self.total}"]
        for key, value in stats.items():
            parts.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
        parts.append(f"eta {_duration(eta)}")
        line = " | ".join(parts)
        if self.tty:
            self.stream.write("\r" + line[:200].ljust(120))
            if step == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\n")
        self.stream.write(text + "\n")
        self.stream.flush()


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

    def write(self, kind: str, step: int, **fields) -> None:
        if not self.enabled:
            return
        row = {"type": kind, "step": step, "time": round(time.time(), 3), **fields}
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")


def rate_table(profile: dict) -> str:
    """One line per latent layer: its resolution and its mean KL in bits."""
    rows = [
        f"  layer {i:3d}  res {r:4d}  {b:9.3f}"
        for i, (r, b) in enumerate(zip(profile["layer_resolutions"], profile["rate_bits_per_layer"]))
    ]
    return "\n".join(rows)
