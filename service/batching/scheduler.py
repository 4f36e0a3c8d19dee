"""The batching layer's front door: which model requests are admitted, how many are in flight, and
how a request's items reach the batcher of their model and operation.

`Scheduler.admit()` admits a request, or raises the 503 the service's phase gives (loading, warming
up, draining); the `Admission` it returns counts the request in flight until it is released, and
hands its items to their batcher (`submit`, typed by the operation: SAMPLE takes SampleItems and
gives images), within its caller's limits (quotas.py: 429 over them, checked at its first
submission). A submitted request counts as waiting in a batcher until its results are in or it
stops waiting (`Submission`). Both counts (`InFlight`) are kept here and nowhere else, for plain and
streamed requests alike: a batch window closes early when no request in flight could still join it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Generic

from ..errors import Cancelled, QueueFull, ServiceError
from ..metrics import Metrics
from ..registry import ServedModel
from .batcher import Batcher, InFlight
from .context import RequestContext
from .engine import Engine
from .operations import OPERATIONS, ItemT, Operation, ResultT
from .quotas import Quotas

# Returns when the request's client has gone (the HTTP layer listens for the disconnect).
Disconnected = Callable[[], Awaitable[None]]


class Scheduler:
    """Admission, the in-flight counts, and one started Batcher per model and operation."""

    def __init__(
        self,
        metrics: Metrics,
        refusal: Callable[[], ServiceError | None],
        *,
        max_batch_size: int,
        max_batch_delay_s: float,
        max_queue_images: int,
        early_close: bool = True,
        small_pass_s: float = 0.0,
    ) -> None:
        """refusal: the error a new request gets now, or None while the service takes work (the
        app's phase decides). early_close: close a window once no request could still join it.
        small_pass_s: how long passes are cut to while small requests are about (0: never)."""
        self.metrics = metrics
        self.refusal = refusal
        self.inflight = InFlight()
        self.quotas = Quotas(metrics)
        self.max_batch_size = max_batch_size
        self.max_batch_delay_s = max_batch_delay_s
        self.max_queue_images = max_queue_images
        self.early_close = early_close
        self.small_pass_s = small_pass_s
        self._batchers: dict[tuple[str, Operation[Any, Any]], Batcher[Any, Any]] = {}

    def start(self, engine: Engine, models: Iterable[ServedModel]) -> None:
        """Start one batcher per model and each operation that serves it (call on the event loop)."""
        for model in models:
            for op in (op for op in OPERATIONS if op.serves(model.vae)):
                batcher = Batcher(
                    model,
                    op,
                    engine,
                    self.metrics,
                    max_batch_size=self.max_batch_size,
                    max_batch_delay_s=self.max_batch_delay_s,
                    max_queue_images=self.max_queue_images,
                    inflight=self.inflight if self.early_close else None,
                    small_pass_s=self.small_pass_s,
                )
                batcher.start()
                self._batchers[(model.name, op)] = batcher

    def admit(self) -> Admission:
        """Admit a model request (the 503 of the service's phase when it takes no work)."""
        error = self.refusal()
        if error is not None:
            raise error
        return Admission(self)

    def batcher(self, model: ServedModel, op: Operation[ItemT, ResultT]) -> Batcher[ItemT, ResultT]:
        """The queue of a model and operation; the 422 naming the model's kind when the operation
        does not serve it (a super-resolution model does not sample from its prior alone)."""
        try:
            return self._batchers[(model.name, op)]
        except KeyError:
            raise op.unsupported(model.name) from None

    @property
    def idle(self) -> bool:
        """No model request in flight and nothing queued or computing."""
        return self.inflight.requests == 0 and not any(b.busy for b in self._batchers.values())

    async def drain(self, timeout_s: float) -> None:
        """Take no new work, finish what is queued and running (within timeout_s), and stop."""
        await asyncio.gather(*(b.drain(timeout_s) for b in self._batchers.values()))


class Admission:
    """One admitted model request, in flight until `release()` (which may be called more than once);
    its items reach their batchers through `submit`."""

    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler
        self._released = False
        self._submitted = False  # whether its caller's limits have been checked
        scheduler.inflight.requests += 1
        scheduler.metrics.inflight.inc()

    def submit(
        self, op: Operation[ItemT, ResultT], model: ServedModel, items: Sequence[ItemT], ctx: RequestContext
    ) -> Submission[ResultT]:
        """Queue all of the items on the model's batcher for `op`, or none (429 over its caller's
        limits on its first submission, 503 queue full or shutting down, 422 for a model the
        operation does not serve)."""
        batcher = self._scheduler.batcher(model, op)
        quotas = self._scheduler.quotas
        now = time.monotonic()
        if not self._submitted:
            quotas.check(ctx.caller, len(items), now, batcher.seconds_for)
        try:
            futures = batcher.submit(items, ctx)
        except QueueFull:
            quotas.refused(ctx.caller, len(items), "queue_full")
            raise
        self._submitted = True
        quotas.charge(ctx.caller, futures, now)
        return Submission(futures, ctx, self._scheduler.inflight)

    async def run(
        self,
        op: Operation[ItemT, ResultT],
        model: ServedModel,
        items: Sequence[ItemT],
        ctx: RequestContext,
        disconnected: Disconnected,
    ) -> list[ResultT]:
        """Submit the items and wait for their results, in order (see Submission.wait)."""
        return await self.submit(op, model, items, ctx).wait(disconnected)

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._scheduler.inflight.requests -= 1
            self._scheduler.metrics.inflight.dec()


class Submission(Generic[ResultT]):
    """A request's items in their batcher: a future per item, `results` gathering them in order, and
    the request counted as waiting in a batcher until the results are in or it stops waiting."""

    def __init__(
        self, futures: list[asyncio.Future[ResultT]], ctx: RequestContext, inflight: InFlight
    ) -> None:
        self.futures = futures
        self.ctx = ctx
        self.results: asyncio.Future[list[ResultT]] = asyncio.gather(*futures)
        self._inflight = inflight
        self._queued = True
        inflight.queued += 1  # from here until its results are back, it cannot join another batch
        self.results.add_done_callback(lambda _: self._unqueue())

    async def wait(self, disconnected: Disconnected) -> list[ResultT]:
        """The results in order; DeadlineExceeded at the deadline, Cancelled once `disconnected()`
        returns, or the first failing item's error. Whatever is still queued then is dropped."""
        listener = asyncio.ensure_future(disconnected())
        try:
            done, _ = await asyncio.wait(
                {self.results, listener},
                timeout=max(self.ctx.remaining(), 0.0),
                return_when=asyncio.FIRST_COMPLETED,
            )
            if self.results in done:
                return self.results.result()
            if listener in done:
                self.ctx.cancelled = True
                raise Cancelled("the client disconnected")
            raise self.ctx.deadline_exceeded()
        finally:
            listener.cancel()
            self.close()

    def close(self) -> None:
        """Stop waiting: the items still queued are cancelled (dropped when their batch forms), and an
        error nobody will read is marked as read."""
        for f in self.futures:
            if not f.done():
                f.cancel()
        if self.results.done():
            if not self.results.cancelled():
                self.results.exception()  # retrieved: raised to the waiter, or nobody was there
        else:
            self.results.cancel()
            # Cancelling the items ends it with their CancelledError: retrieved, nobody waits for it.
            self.results.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._unqueue()

    def _unqueue(self) -> None:
        if self._queued:
            self._queued = False
            self._inflight.queued -= 1
