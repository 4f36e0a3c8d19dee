"""torchrun / DistributedDataParallel plumbing: the same code runs as one process or many.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them we are a single process and no
process group is created. NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass
from typing import Any, NoReturn

import torch
import torch.distributed as dist

from ..inference import resolve_device


@dataclass
class Dist:
    """This process's place in the run: its rank, the number of processes, its device."""

    rank: int = 0
    world: int = 1
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_true(self, flag: bool) -> bool:
        """True when `flag` holds on every rank (all ranks must take the same branch)."""
        if not self.enabled:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return bool(t.item() > 0)

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order (on every rank)."""
        if not self.enabled:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def close(self, finished: bool = True) -> None:
        """Leave the process group. After a finished run, first wait for every rank: a rank that
        tears gloo down while a peer still has a message in flight aborts that peer (SIGABRT,
        "terminate called without an active exception"; 3 of 25 two-process jobs on a busy CPU).
        After an error the peers may never arrive, so no waiting then."""
        if self.enabled and dist.is_initialized():
            if finished:
                dist.barrier()
            dist.destroy_process_group()


def setup(device: str | None) -> Dist:
    """Join the torchrun process group (if any) and pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank if dev.index is None else dev.index)
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return Dist(rank=rank, world=world, device=dev)


def exit_process(code: int) -> NoReturn:
    """End a command's process with `code`. A torchrun worker (WORLD_SIZE > 1) flushes its output
    and leaves through os._exit, skipping the interpreter's teardown: with gloo's threads still
    about, that teardown aborted one rank now and then after the job had finished and written
    everything ("terminate called without an active exception", SIGABRT; twice in CI's two-process
    bulk-job test, even with the barrier in Dist.close), and torchrun then failed the whole job."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
