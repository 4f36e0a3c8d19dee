"""A streaming request's previews, from the engine's thread to its event loop.

A batch of streaming requests shares one top-down pass on the engine thread. After each resolution
the operation hands every request its images (`StageQueue.send`, on the engine thread), which posts
them to the event loop with `call_soon_threadsafe`; there the images of a stage are gathered until
all of the request's images have reached it (a request larger than a batch spans several passes, and
a failed batch is re-run in parts, which may send a stage twice), then queued for the request's
events in stage order. `send` answers whether the request still wants its images: once no request
of a pass does (every client has gone, or its deadline has passed), the pass stops there.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from ..metrics import Metrics
from .context import RequestContext
from .items import Image, StageInfo


class StageQueue:
    """A streaming request's previews, from the engine thread to its event generator (StageSink)."""

    def __init__(
        self, n: int, ctx: RequestContext, loop: asyncio.AbstractEventLoop, metrics: Metrics, model: str
    ) -> None:
        self.n, self.ctx, self.loop = n, ctx, loop
        self.queue: asyncio.Queue[tuple[StageInfo, list[Image]] | None] = asyncio.Queue()
        self._partial: dict[int, dict[int, Image]] = {}  # stage index -> images by place in request
        self._queued: set[int] = set()  # stages already complete
        self._stages = metrics.stream_stages
        self._model = model

    def send(self, stage: StageInfo, images: dict[int, Image]) -> bool:
        """On the engine thread: queue these previews if the request still wants them."""
        wanted = self.ctx.problem() is None
        self._stages.labels(model=self._model, outcome="sent" if wanted else "dropped").inc()
        if wanted:
            self.loop.call_soon_threadsafe(self._collect, stage, images)
        return wanted

    def _collect(self, stage: StageInfo, images: dict[int, Image]) -> None:
        if stage.index in self._queued:
            return  # a re-run of part of a failed batch sent it again
        rows = self._partial.setdefault(stage.index, {})
        rows.update(images)
        if len(rows) == self.n:
            del self._partial[stage.index]
            self._queued.add(stage.index)
            self.queue.put_nowait((stage, [rows[i] for i in range(self.n)]))

    def close(self) -> None:
        """Called on the event loop when the request's results are in: no stage comes after this."""
        self.queue.put_nowait(None)

    async def stages(self) -> AsyncIterator[tuple[StageInfo, list[Image]]]:
        """The request's complete stages in order, until close(); DeadlineExceeded at its deadline."""
        while True:
            remaining = self.ctx.remaining()
            if remaining <= 0:
                raise self.ctx.deadline_exceeded()
            try:
                entry = await asyncio.wait_for(self.queue.get(), remaining)
            except asyncio.TimeoutError:
                raise self.ctx.deadline_exceeded() from None
            if entry is None:
                return
            yield entry
