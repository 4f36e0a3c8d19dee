"""The order in which a batcher's passes take its queued images: fair across requests, callers and
priorities, where a single queue would serve them first come, first served.

Queued requests are grouped into flows, one per caller (API key, or client address) and priority.
A pass takes images one at a time:

- from the highest priority that has any queued (high, then normal, then low);
- within it, from the flow of least virtual time, each image advancing that time by 1 / the
  caller's weight, so that callers who all have work queued share the passes in proportion to
  their weights (start-time fair queuing);
- within the flow, from the request of least virtual time, each image advancing it by 1: every
  queued request gets one image per round, whatever its size (deficit round-robin, a quantum of one
  image), so a one-image request behind large ones is in the next pass.

A request or flow that joins starts one step after the virtual time of the last image taken, as
if it had just been served, yet before those that were (at equal times, the one that has had fewer
images goes first): it waits for the rest of the current round and no longer, so a pass of one
image per queued request holds it, and a stream of new requests cannot starve an old one. A flow
that empties and comes back starts no earlier than where it left off, so a caller gains nothing
from idling between its requests. A request's images leave in their order: when it spans passes,
its images still come back in order.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic

from ..http.callers import Priority
from .context import RequestContext
from .operations import ItemT, ResultT


@dataclass
class Pending(Generic[ItemT, ResultT]):
    """One image's work waiting for a pass, and where its result goes."""

    item: ItemT
    ctx: RequestContext
    future: asyncio.Future[ResultT]
    enqueued_at: float


class _Request(Generic[ItemT, ResultT]):
    """A request's images not yet taken, in order."""

    __slots__ = ("pending", "seq")

    def __init__(self, pending: Sequence[Pending[ItemT, ResultT]], seq: int) -> None:
        self.pending = collections.deque(pending)
        self.seq = seq  # arrival order

    @property
    def live(self) -> bool:
        """Whether its request still waits for its images (a dropped request's are all done)."""
        return not self.pending[0].future.done()


class _Flow(Generic[ItemT, ResultT]):
    """One caller's requests at one priority."""

    __slots__ = ("caller", "clock", "requests", "seq", "weight")

    def __init__(self, caller: str, weight: float, seq: int) -> None:
        self.caller, self.weight, self.seq = caller, weight, seq
        self.requests: list[_Entry] = []  # a heap of its requests
        self.clock = 0.0  # the virtual time of its last image taken


# A heap entry: (virtual time of the next image, images taken so far, arrival, the request or flow).
# At equal times the one that has had fewer images goes first: one that has just joined is served
# before those starting their next round, so a pass of one image per queued request holds them all.
_Entry = tuple[float, int, int, Any]


class _Level(Generic[ItemT, ResultT]):
    """The flows of one priority."""

    __slots__ = ("active", "clock", "flows", "idle")

    def __init__(self) -> None:
        self.flows: list[_Entry] = []  # a heap of its flows with images queued
        self.active: dict[str, _Flow[ItemT, ResultT]] = {}  # those flows, by caller
        self.clock = 0.0  # the virtual time of the last image taken
        # The virtual time a flow had reached when it emptied, kept while ahead of the clock, so
        # that a caller whose queue empties for a moment (between its requests) gains nothing.
        self.idle: dict[str, float] = {}

    def start(self, caller: str, weight: float) -> float:
        """The virtual time a flow of `caller` that joins now starts at."""
        idle = self.idle.pop(caller, -math.inf)
        if len(self.idle) > 64 + 2 * len(self.active):  # forget those the clock has passed
            self.idle = {k: v for k, v in self.idle.items() if v > self.clock}
        return max(self.clock + 1.0 / weight, idle)


class FairQueue(Generic[ItemT, ResultT]):
    """The images waiting in one batcher, taken in the fair order above."""

    def __init__(self) -> None:
        self._seq = itertools.count()
        self._clear()

    def _clear(self) -> None:
        self._levels: list[_Level[ItemT, ResultT]] = [_Level() for _ in Priority]
        self._top = [self._levels[p] for p in sorted(Priority, reverse=True)]
        self._requests: dict[int, _Request[ItemT, ResultT]] = {}  # by arrival (insertion order)
        self._images = 0

    def __len__(self) -> int:
        """Images queued (those of requests that gave up included, until taken or purged)."""
        return self._images

    @property
    def requests(self) -> int:
        """Requests with images queued."""
        return len(self._requests)

    def push(self, pending: Sequence[Pending[ItemT, ResultT]]) -> None:
        """Queue one request's images (all of the same request: its context's caller and priority)."""
        if not pending:
            return
        ctx = pending[0].ctx
        level = self._levels[ctx.priority]
        flow = level.active.get(ctx.caller.id)
        if flow is None:
            flow = _Flow(ctx.caller.id, ctx.caller.weight, next(self._seq))
            level.active[flow.caller] = flow
            heapq.heappush(level.flows, (level.start(flow.caller, flow.weight), 0, flow.seq, flow))
        request = _Request(pending, next(self._seq))
        heapq.heappush(flow.requests, (flow.clock + 1.0, 0, request.seq, request))
        self._requests[request.seq] = request
        self._images += len(pending)

    def take(
        self, limit: int, keep: Callable[[Pending[ItemT, ResultT]], bool]
    ) -> list[Pending[ItemT, ResultT]]:
        """Up to `limit` images in the fair order. `keep(p)` says whether an image is still wanted;
        one that is not is dropped without counting towards the limit or its flow's share."""
        taken: list[Pending[ItemT, ResultT]] = []
        while len(taken) < limit and self._images:
            level = next(lv for lv in self._top if lv.flows)
            t_flow, n_flow, seq_flow, flow = heapq.heappop(level.flows)
            t_request, n_request, seq_request, request = heapq.heappop(flow.requests)
            p = request.pending.popleft()
            self._images -= 1
            if keep(p):
                taken.append(p)
                level.clock, flow.clock = t_flow, t_request
                t_flow, n_flow = t_flow + 1.0 / flow.weight, n_flow + 1
                t_request, n_request = t_request + 1.0, n_request + 1
            if request.pending:
                heapq.heappush(flow.requests, (t_request, n_request, seq_request, request))
            else:
                del self._requests[request.seq]
            if flow.requests:
                heapq.heappush(level.flows, (t_flow, n_flow, seq_flow, flow))
            else:
                del level.active[flow.caller]
                level.idle[flow.caller] = t_flow
        return taken

    def first_arrival(self) -> float | None:
        """When the earliest request still waiting for its images was queued (None: none is)."""
        for request in self._requests.values():
            if request.live:
                return request.pending[0].enqueued_at
        return None

    def purge(self) -> None:
        """Drop the images whose request already gave up (their futures are done)."""
        for level in self._levels:
            for *_, flow in level.flows:
                for *_, request in flow.requests:
                    kept = [p for p in request.pending if not p.future.done()]
                    self._images -= len(request.pending) - len(kept)
                    request.pending = collections.deque(kept)
                    if not kept:
                        del self._requests[request.seq]
                flow.requests = [entry for entry in flow.requests if entry[-1].pending]
                heapq.heapify(flow.requests)
                if not flow.requests:
                    del level.active[flow.caller]
            level.flows = [entry for entry in level.flows if entry[-1].requests]
            heapq.heapify(level.flows)

    def pop_all(self) -> list[Pending[ItemT, ResultT]]:
        """Every queued image, emptying the queue."""
        every = [p for request in self._requests.values() for p in request.pending]
        self._clear()
        return every
