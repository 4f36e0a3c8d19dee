"""The order in which a batcher's passes take its queued images: fair across priorities, callers and
requests, where a single queue would serve them first come, first served.

Queued requests are grouped into flows, one per caller (API key, or client address) and priority.
A pass takes images one at a time:

- from the highest priority that has any queued (high, then normal, then low);
- within it, from the flow of least virtual time, each image advancing that time by 1 / the
  caller's weight, so that callers who all have work queued share the passes in proportion to
  their weights (start-time fair queuing);
- within the flow, first one image of each of its requests (a round: the least recently served
  first, a newcomer counting as served in the pass before the latest), so every queued request
  progresses in every pass and a one-image request behind large ones is in the next pass; then
  the rest of the caller's share to its request with the fewest images left (the earliest on a
  tie), so its requests end one after another. Shared equally, a caller's requests of one size
  would all end in the same pass, and the caller would have nothing queued (and get no share)
  while its clients fetch their answers.

A flow that joins starts one step after the virtual time of the last image taken, as if it had
just been served, yet before those that were (at equal times, the flow that has had fewer images
goes first), so a stream of new callers cannot starve an old one. A flow that empties and comes
back starts no earlier than where it left off, so a caller gains nothing from idling; one that
comes back within a pass keeps its place even if the others moved on: its clients were fetching
their answers while the next pass formed, and without its place it would lose that pass's share
every time. A request's images leave in their order: when it spans passes, its images still come
back in order.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic

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

    __slots__ = ("pending", "seq", "served")

    def __init__(self, pending: Sequence[Pending[ItemT, ResultT]], seq: int, served: int) -> None:
        self.pending = collections.deque(pending)
        self.seq = seq  # arrival order
        self.served = served  # the last pass it had an image in

    @property
    def live(self) -> bool:
        """Whether its request still waits for its images (a dropped request's are all done)."""
        return not self.pending[0].future.done()


class _Flow(Generic[ItemT, ResultT]):
    """One caller's requests at one priority."""

    __slots__ = ("caller", "requests", "seq", "weight")

    def __init__(self, caller: str, weight: float, seq: int) -> None:
        self.caller, self.weight, self.seq = caller, weight, seq
        self.requests: list[_Request[ItemT, ResultT]] = []  # in arrival order

    def next_request(self, this_pass: int) -> _Request[ItemT, ResultT]:
        """The request its next image comes from: one not served in this pass yet, the least
        recently served first; once each has been, the one with the fewest images left."""
        unserved = [r for r in self.requests if r.served < this_pass]
        if unserved:
            return min(unserved, key=lambda r: (r.served, r.seq))
        return min(self.requests, key=lambda r: (len(r.pending), r.seq))


# A flow in its level's heap: (virtual time of its next image, images it has had, arrival, flow).
# At equal times the one that has had fewer images goes first.
_Entry = tuple[float, int, int, _Flow]


class _Level(Generic[ItemT, ResultT]):
    """The flows of one priority."""

    __slots__ = ("active", "clock", "flows", "idle")

    def __init__(self) -> None:
        self.flows: list[_Entry] = []  # a heap of its flows with images queued
        self.active: dict[str, _Flow[ItemT, ResultT]] = {}  # those flows, by caller
        self.clock = 0.0  # the virtual time of the last image taken
        # The virtual time a flow had reached when it emptied, and the pass it emptied in.
        self.idle: dict[str, tuple[float, int]] = {}

    def start(self, caller: str, weight: float, passes: int) -> float:
        """The virtual time a flow of `caller` that joins now (`passes` formed so far) starts at."""
        tag, emptied = self.idle.pop(caller, (-math.inf, -2))
        if len(self.idle) > 64 + 2 * len(self.active):  # forget the long gone
            self.idle = {k: v for k, v in self.idle.items() if v[0] > self.clock or v[1] >= passes - 1}
        if emptied >= passes - 1:  # back within a pass: it keeps its place
            return tag
        return max(self.clock + 1.0 / weight, tag)


class FairQueue(Generic[ItemT, ResultT]):
    """The images waiting in one batcher, taken in the fair order above."""

    def __init__(self) -> None:
        self._seq = itertools.count()
        self._passes = 0  # take() calls: passes formed
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
            start = level.start(flow.caller, flow.weight, self._passes)
            heapq.heappush(level.flows, (start, 0, flow.seq, flow))
        # As if served in the pass before the latest: ahead of the requests served in the latest,
        # behind those that were not (and so behind no more than one pass's newcomers).
        request = _Request(pending, next(self._seq), served=self._passes - 1)
        flow.requests.append(request)
        self._requests[request.seq] = request
        self._images += len(pending)

    def take(
        self, limit: int, keep: Callable[[Pending[ItemT, ResultT]], bool]
    ) -> list[Pending[ItemT, ResultT]]:
        """The next pass: up to `limit` images in the fair order. `keep(p)` says whether an image is
        still wanted; one that is not is dropped without counting towards the limit or its flow's
        share."""
        self._passes += 1
        taken: list[Pending[ItemT, ResultT]] = []
        while len(taken) < limit and self._images:
            level = next(lv for lv in self._top if lv.flows)
            tag, had, seq, flow = heapq.heappop(level.flows)
            request = flow.next_request(self._passes)
            p = request.pending.popleft()
            self._images -= 1
            if keep(p):
                taken.append(p)
                request.served = self._passes
                level.clock = tag
                tag, had = tag + 1.0 / flow.weight, had + 1
            if not request.pending:
                flow.requests.remove(request)
                del self._requests[request.seq]
            if flow.requests:
                heapq.heappush(level.flows, (tag, had, seq, flow))
            else:
                del level.active[flow.caller]
                level.idle[flow.caller] = (tag, self._passes)
        return taken

    def largest(self) -> int:
        """The most images a queued request has left (0: none is queued)."""
        return max((len(r.pending) for r in self._requests.values()), default=0)

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
                for request in flow.requests:
                    kept = [p for p in request.pending if not p.future.done()]
                    self._images -= len(request.pending) - len(kept)
                    request.pending = collections.deque(kept)
                    if not kept:
                        del self._requests[request.seq]
                flow.requests = [r for r in flow.requests if r.pending]
                if not flow.requests:
                    del level.active[flow.caller]
            level.flows = [entry for entry in level.flows if entry[-1].requests]
            heapq.heapify(level.flows)

    def pop_all(self) -> list[Pending[ItemT, ResultT]]:
        """Every queued image, emptying the queue."""
        every = [p for request in self._requests.values() for p in request.pending]
        self._clear()
        return every
