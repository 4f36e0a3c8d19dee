"""Helpers for the tests of the bulk jobs: run one as its users do, read back what it wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from model.bundled import bundled_weights

BUNDLED = bundled_weights() / "mnist"
# One torch thread per process: the CI box has 2 cores, and more threads than free cores stall torch.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run_job(module: str, args: list[str], processes: int = 1) -> tuple[dict, str]:
    """`python -m model.training.bulk.<module>` for one process, torchrun with gloo for more, on the CPU:
    the printed summary and the standard error (where the progress bar goes)."""
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    cmd = [*launcher, "-m", f"model.training.bulk.{module}", *args, "--device", "cpu"]
    result = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout), result.stderr


def outputs(folder: Path) -> dict[str, bytes]:
    """Every file a job wrote, by path under `folder`, but runs.jsonl (the runs' timings)."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "runs.jsonl"
    }


def stamps(folder: Path, names: list[str]) -> dict[str, tuple[int, int]]:
    """Inode and modification time of files: a rewrite (atomic, so a new inode) changes them."""
    return {n: ((folder / n).stat().st_ino, (folder / n).stat().st_mtime_ns) for n in names}
