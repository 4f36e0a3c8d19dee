"""Dynamic batching: one bounded async queue per (model, operation), feeding the engine.

Batches count images: a /sample with n=8 enqueues 8 items (so a request with n above max_batch_size
is served over several passes, images split at any point; each image still depends only on its own
seed). A pass takes the queued images in a fair order (fairness.py): one image of every queued
request in turn, weighted callers in turn, higher priorities first; so a small request queued behind
large ones is in the next pass, and a large one still progresses in every pass.

How many images a pass takes: max_batch_size, unless small requests are about (one that a cut pass
holds whole came in during the latest pass or the one before) and the queue holds more than a cut
pass; then the pass is cut to small_pass_ms of the model's recent time per image, though never
below one image of each queued request. A small request thus waits for about two short passes
rather than two full ones, and when only large requests are queued the passes stay full.

A batch window opens at the first queued arrival and closes when max_batch_size images are
queued or max_batch_delay_ms has passed since that arrival, whichever comes first, or as soon as no
request that could still join is in the service (`InFlight`, which the scheduler keeps for every
request, plain or streamed), so a lone client pays no window. While a batch computes, the next one
gathers, so under load batches fill without waiting for the window. A request's items are admitted
all together or not at all: when they do not fit in max_queue_images, the request gets 503 with
Retry-After at once (while a request larger than a pass is queued, a small one may use one pass's
worth of places beyond it: it waits one round of the fair order however many images are queued).
Items whose request expired or disconnected are dropped when the batch forms.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic

from ..errors import InternalError, QueueFull, ShuttingDown
from ..metrics import Metrics
from ..registry import ServedModel
from .context import RequestContext
from .engine import Engine, Outcome
from .fairness import FairQueue, Pending
from .operations import ItemT, Operation, ResultT

log = logging.getLogger("service.batcher")


@dataclass
class InFlight:
    """How many model requests are in the service, and how many of them have images in a batcher:
    counted where requests are admitted and where their items are submitted (scheduler.py), so a
    batch window asks in O(1) whether another request could still add images to it."""

    requests: int = 0  # model requests admitted and not yet answered
    queued: int = 0  # of those, the ones whose images wait in a batcher or are being computed

    @property
    def could_join(self) -> bool:
        """Whether a request is in flight without images in a batcher: being read and validated,
        or being answered (a closed-loop client sends its next request right after). Either may
        soon add images to an open batch window."""
        return self.requests > self.queued


class Batcher(Generic[ItemT, ResultT]):
    """The queue and batching loop of one model and operation."""

    def __init__(
        self,
        model: ServedModel,
        op: Operation[ItemT, ResultT],
        engine: Engine,
        metrics: Metrics,
        *,
        max_batch_size: int,
        max_batch_delay_s: float,
        max_queue_images: int,
        inflight: InFlight | None = None,
        small_pass_s: float = 0.0,
    ) -> None:
        """inflight: the service's request counts; a window closes early when no request could
        still join it. Without it, every window runs its full max_batch_delay_s. small_pass_s:
        how long a pass is cut to while small requests are about (0: never cut)."""
        self.model, self.op, self.engine, self.metrics = model, op, engine, metrics
        self.inflight = inflight
        self.max_batch_size = max_batch_size
        self.max_batch_delay_s = max_batch_delay_s
        self.max_queue_images = max_queue_images
        self.small_pass_s = small_pass_s
        self._queue: FairQueue[ItemT, ResultT] = FairQueue()
        self._arrived = asyncio.Event()
        self._closing = False
        self._running: list[Pending[ItemT, ResultT]] = []  # the batch in the pass now running
        self._image_s = 0.0  # moving average of a pass's seconds per image (0: no pass yet)
        self._passes = 0  # passes started
        self._small_seen = -2  # the passes started when the latest small request came in
        self._task: asyncio.Task | None = None
        self._metrics = metrics.batch_metrics(model.name, op.name)

    # ---- the request side -----------------------------------------------------------------------

    def submit(self, items: Sequence[ItemT], ctx: RequestContext) -> list[asyncio.Future[ResultT]]:
        """Enqueue all of a request's items (or none: QueueFull / ShuttingDown); one future each."""
        if self._closing:
            raise ShuttingDown("the service is shutting down and takes no new work")
        cut = self._cut_size()
        small = len(items) <= cut
        if len(self._queue) + len(items) > self.max_queue_images:
            self._purge_abandoned()
            if len(self._queue) + len(items) > self._bound(small, cut):
                raise QueueFull(
                    f"the queue of {self.model.name}/{self.op.name} holds {len(self._queue)} of at "
                    f"most {self.max_queue_images} images; this request needs {len(items)}. Retry "
                    "after the Retry-After header's seconds.",
                    headers={"Retry-After": str(self.retry_after_s())},
                )
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        pending = [Pending(item, ctx, loop.create_future(), now) for item in items]
        self._queue.push(pending)
        if small:
            self._small_seen = self._passes
        self._metrics.queue_depth.set(len(self._queue))
        self._arrived.set()
        return [p.future for p in pending]

    def _bound(self, small: bool, cut: int) -> int:
        """The most images the queue may hold with this request in: max_queue_images, and one pass
        more for a small request while a request larger than a pass is queued. The small one waits
        one round of the fair order however many images are queued, so the large ones that fill
        the queue do not refuse it."""
        if small and self._queue.largest() > cut:
            return self.max_queue_images + self.max_batch_size
        return self.max_queue_images

    def _purge_abandoned(self) -> None:
        """Drop items whose request already gave up, so they do not hold queue places."""
        self._queue.purge()
        self._metrics.queue_depth.set(len(self._queue))

    def retry_after_s(self) -> int:
        """Seconds until the queue has likely drained: its images at the recent time per image."""
        return max(1, math.ceil(self.seconds_for(len(self._queue))))

    def seconds_for(self, images: int) -> float:
        """About how long the model takes for `images` more images, at the recent time per image."""
        passes = math.ceil(images / self.max_batch_size)
        return images * self._image_s + passes * self.max_batch_delay_s

    def _cut_size(self) -> int:
        """The images of a cut pass: what the model computes in small_pass_s (max_batch_size when
        passes are never cut, or before the first pass has been timed)."""
        if self.small_pass_s <= 0 or self._image_s <= 0:
            return self.max_batch_size
        return max(1, min(self.max_batch_size, int(self.small_pass_s / self._image_s)))

    def _pass_limit(self) -> int:
        """The most images the next pass takes: a cut pass while small requests are about and more
        than one is queued, yet one image of each queued request; else max_batch_size."""
        cut = self._cut_size()
        if self._small_seen < self._passes - 1 or len(self._queue) <= cut:
            return self.max_batch_size
        return min(self.max_batch_size, max(cut, self._queue.requests))

    @property
    def busy(self) -> bool:
        return bool(self._queue or self._running)

    # ---- the batching loop --------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"batcher-{self.model.name}-{self.op.name}")

    async def _loop(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._arrived.clear()
                await self._arrived.wait()
                continue
            await self._wait_for_window()
            batch = self._take_batch()
            if batch:
                await self._run(batch)

    async def _wait_for_window(self) -> None:
        """Until max_batch_size images are queued or the window from the first live arrival closes."""
        while not self._closing:
            first = self._queue.first_arrival()  # a live one: the window re-anchors when one gave up
            if first is None or len(self._queue) >= self.max_batch_size:
                return
            if self.inflight is not None and not self.inflight.could_join:
                return
            remaining = first + self.max_batch_delay_s - time.monotonic()
            if remaining <= 0:
                return
            self._arrived.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    def _take_batch(self) -> list[Pending[ItemT, ResultT]]:
        """The next pass's live items in the fair order; expired or abandoned ones are failed or skipped."""
        now = time.monotonic()

        def live(p: Pending[ItemT, ResultT]) -> bool:
            if p.future.done():  # its request already answered (deadline, disconnect, another item failed)
                return False
            problem = p.ctx.problem(now)
            if problem is not None:
                p.future.set_exception(problem)
                return False
            self._metrics.queue_duration.observe(now - p.enqueued_at)
            return True

        batch = self._queue.take(self._pass_limit(), live)
        self._metrics.queue_depth.set(len(self._queue))
        return batch

    async def _run(self, batch: list[Pending[ItemT, ResultT]]) -> None:
        self._running = batch
        self._passes += 1
        t0 = time.monotonic()
        try:
            outcomes = await self.engine.run_batch(
                self.model, self.op, [p.item for p in batch], [p.ctx for p in batch]
            )
        except Exception:  # the engine reports item failures as outcomes; this is a bug, not bad input
            log.exception(
                "%s/%s: batch of %d failed outside the model", self.model.name, self.op.name, len(batch)
            )
            outcomes: list[Outcome[ResultT]] = [
                InternalError("the batch failed; the log has the details")
            ] * len(batch)
        finally:
            self._running = []
        image_s = (time.monotonic() - t0) / len(batch)
        self._image_s = image_s if self._image_s == 0 else 0.8 * self._image_s + 0.2 * image_s
        for p, outcome in zip(batch, outcomes):
            if p.future.done():
                continue
            if isinstance(outcome, Exception):
                p.future.set_exception(outcome)
            else:
                p.future.set_result(outcome)

    # ---- shutdown -------------------------------------------------------------------------------

    async def drain(self, timeout_s: float) -> None:
        """Take no new work, finish what is queued and running, and stop (within timeout_s)."""
        self._closing = True
        self._arrived.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        except asyncio.TimeoutError:
            log.error(
                "%s/%s: drain timed out with %d images queued; failing them",
                self.model.name, self.op.name, len(self._queue),
            )  # fmt: skip
            self._task.cancel()
            for p in self._queue.pop_all():
                if not p.future.done():
                    p.future.set_exception(ShuttingDown("the service stopped before this request was served"))
