"""What the batcher and the engine know about the request an item belongs to: its deadline and
whether its client is still there, and the wait that races the results against both.

The deadline is end to end (from arrival) and checked three times: when the batch forms, in the
worker thread just before the model pass, and by the waiting route, which answers 504 at the
deadline even if a pass that started in time is still running. A disconnect, seen by listening
on the ASGI receive channel (vLLM's listen_for_disconnect: `request.is_disconnected()` misses it
while a handler awaits), marks the request cancelled so its items are dropped before compute.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from .errors import Cancelled, DeadlineExceeded, ServiceError


@dataclass
class RequestContext:
    request_id: str
    deadline: float  # time.monotonic() after which the request is abandoned
    timeout_s: float  # the deadline as a duration, for messages
    cancelled: bool = field(default=False)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def problem(self, now: float | None = None) -> ServiceError | None:
        """Why this request's items must not be computed any more, or None while they may be."""
        if self.cancelled:
            return Cancelled("the client disconnected")
        if (now if now is not None else time.monotonic()) >= self.deadline:
            return self.deadline_exceeded()
        return None

    def deadline_exceeded(self) -> DeadlineExceeded:
        return DeadlineExceeded(
            f"the request was not served within its {self.timeout_s:g} s deadline; it was not computed "
            "(or its result was discarded). Retry later, ask for fewer images, or raise timeout_ms."
        )


async def listen_for_disconnect(request: Request) -> None:
    """Return when the client disconnects. Only call once the body has been read."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def wait_for_results(
    request: Request, ctx: RequestContext, futures: Sequence[asyncio.Future]
) -> list[Any]:
    """Results of `futures` in order; DeadlineExceeded at the deadline, Cancelled on disconnect, or
    the first item's error. Whatever is still queued when this returns is cancelled (and dropped)."""
    gathered = asyncio.gather(*futures)
    disconnect = asyncio.create_task(listen_for_disconnect(request))
    try:
        done, _ = await asyncio.wait(
            {gathered, disconnect}, timeout=max(ctx.remaining(), 0.0), return_when=asyncio.FIRST_COMPLETED
        )
        if gathered in done:
            return gathered.result()
        if disconnect in done:
            ctx.cancelled = True
            raise Cancelled("the client disconnected")
        raise ctx.deadline_exceeded()
    finally:
        disconnect.cancel()
        for f in futures:
            if not f.done():
                f.cancel()
        if gathered.done() and not gathered.cancelled():
            gathered.exception()  # mark retrieved: the error (if any) was raised above
        else:
            gathered.cancel()
            # Cancelling the items ends it with their CancelledError: retrieved, nobody waits for it.
            gathered.add_done_callback(lambda f: f.cancelled() or f.exception())
