"""Train a Very Deep VAE on your own images.

    python -m model.training.train --data mnist --preset mnist --out runs/mnist      # the bundled model
    torchrun --nproc_per_node 4 -m model.training.train --data cifar-10-batches-py/ --preset cifar10 \\
        --out runs/c10
    python -m model.training.train ... --resume                 # continue exactly where it stopped

Writes under --out: checkpoint.pt (atomic, resumable exactly with --resume), log.jsonl, sample
grids in samples/, rate_profile.json, and the served model folder model/ (EMA weights,
config.json, README.md), loadable by model.load_model and by the service.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ..hparams import HParamsError
from .config import parse_args
from .data import DataError
from .distributed import exit_process
from .tensorboard_log import MissingExtra
from .trainer import Trainer


def main(argv: Sequence[str] | None = None, prog: str = "python -m model.training.train") -> int:
    """Train as the command line says; 2 for bad data, hyperparameters or a missing checkpoint."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        cfg = parse_args(argv, prog=prog, description=__doc__.replace("python -m model.training.train", prog))
        trainer = Trainer(cfg, argv)
    except (DataError, HParamsError, FileNotFoundError, ValueError, MissingExtra) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finished = False
    try:
        trainer.run()
        finished = True
    finally:
        trainer.log.close()
        trainer.dist.close(finished)
    return 0


if __name__ == "__main__":
    exit_process(main())
