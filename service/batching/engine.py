"""Runs batches on the model, off the event loop, and keeps one bad item from failing the others.

One worker thread per device runs every model pass, so the event loop keeps answering health
checks, metrics and new requests while a batch computes, and passes on one device never contend.
Just before a pass, items whose request expired or disconnected are dropped. When a pass raises,
the batch is bisected and the halves re-run until the failing items are alone: they get their own
error (422 for a ValueError from the model, which names the bad parameter, else 500) and every other
item its normal result. A CUDA out-of-memory error splits the batch the same way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

from ..errors import InternalError, InvalidInput, OutOfMemory, ServiceError
from ..metrics import Metrics
from ..registry import ServedModel
from .context import RequestContext
from .operations import OPERATIONS, ItemT, Operation, ResultT

log = logging.getLogger("service.engine")

T = TypeVar("T")
# An outcome is an item's result, or the ServiceError that item's request gets.
Outcome = ResultT | ServiceError


# torch's own default (the physical cores), read before anything changes it.
TORCH_DEFAULT_THREADS = torch.get_num_threads()


def cpu_threads(requested: int) -> int:
    """torch intra-op threads for CPU inference: `requested`, or (0) one fewer than torch's default
    (the physical cores), so that the event loop keeps a core to parse and answer requests."""
    return requested if requested > 0 else max(1, TORCH_DEFAULT_THREADS - 1)


class Engine:
    """Executes batches of one device on its worker thread."""

    def __init__(self, device: torch.device, metrics: Metrics) -> None:
        self.device = device
        self.metrics = metrics
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"vae-{device.type}")

    async def call(self, fn: Callable[..., T], *args: object) -> T:
        """Run a blocking function on the device thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def run_batch(
        self,
        model: ServedModel,
        op: Operation[ItemT, ResultT],
        items: Sequence[ItemT],
        contexts: Sequence[RequestContext],
    ) -> list[Outcome[ResultT]]:
        """One outcome per item, in order. Never raises for an item's failure."""
        return await self.call(self._run_live, model, op, list(items), list(contexts))

    async def warmup(self, model: ServedModel) -> None:
        """One small batch per operation, so first requests do not pay for lazy initialisation."""
        for op in (op for op in OPERATIONS if op.serves(model.vae)):
            items = op.warmup_items(model.vae)
            t0 = time.perf_counter()
            outcomes = await self.call(self._isolate, model, op, items, False)
            failed = [o for o in outcomes if isinstance(o, ServiceError)]
            if failed:
                raise RuntimeError(f"warm-up of {op.name} on model {model.name!r} failed: {failed[0].detail}")
            log.info("warmed up %s/%s in %.0f ms", model.name, op.name, 1000 * (time.perf_counter() - t0))

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    # ---- on the device thread ------------------------------------------------------------------

    def _run_live(
        self,
        model: ServedModel,
        op: Operation[ItemT, ResultT],
        items: list[ItemT],
        contexts: list[RequestContext],
    ) -> list[Outcome[ResultT]]:
        outcomes: list[Outcome[ResultT] | None] = [None] * len(items)
        now = time.monotonic()
        live = []
        for i, ctx in enumerate(contexts):
            problem = ctx.problem(now)  # the last check before compute
            if problem is None:
                live.append(i)
            else:
                outcomes[i] = problem
        if live:
            results = self._isolate(model, op, [items[i] for i in live], True)
            for i, result in zip(live, results):
                outcomes[i] = result
        return outcomes

    def _isolate(
        self, model: ServedModel, op: Operation[ItemT, ResultT], items: list[ItemT], record: bool
    ) -> list[Outcome[ResultT]]:
        """Run items in one pass; on failure, bisect until each failing item stands alone."""
        t0 = time.perf_counter()
        try:
            results = op.run(model.vae, items)
        except torch.cuda.OutOfMemoryError:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            if len(items) == 1:
                log.error("%s/%s: out of memory on a single image", model.name, op.name)
                return [OutOfMemory(f"one image does not fit in the memory of {self.device}")]
            log.warning("%s/%s: out of memory at batch size %d; splitting", model.name, op.name, len(items))
        except Exception as e:
            if len(items) == 1:
                return [self._item_error(model, op, e)]
            log.info(
                "%s/%s: batch of %d failed (%s: %s); splitting to isolate the failing items",
                model.name, op.name, len(items), type(e).__name__, e,
            )  # fmt: skip
        else:
            if record:
                produced = sum(not isinstance(r, ServiceError) for r in results)  # a stream may stop early
                self._record(model, op, len(items), produced, time.perf_counter() - t0)
            return results
        mid = len(items) // 2
        return self._isolate(model, op, items[:mid], record) + self._isolate(model, op, items[mid:], record)

    def _item_error(self, model: ServedModel, op: Operation[ItemT, ResultT], e: Exception) -> ServiceError:
        if isinstance(e, ValueError):  # the model's message names the parameter it rejects
            return InvalidInput(f"model {model.name!r} rejected the request: {e}")
        log.error("%s/%s failed on one item", model.name, op.name, exc_info=e)
        return InternalError(
            f"the model failed on this request ({type(e).__name__}); the log has the details"
        )

    def _record(
        self, model: ServedModel, op: Operation[ItemT, ResultT], size: int, produced: int, seconds: float
    ) -> None:
        m = self.metrics.batch_metrics(model.name, op.name)
        m.compute_duration.observe(seconds)
        m.batch_size.observe(size)
        m.images.inc(produced)
        m.batches.inc()
