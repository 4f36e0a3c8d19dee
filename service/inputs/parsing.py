"""Where a request body is turned into work items: on the event loop when it is small, else on one
parsing thread, so that no body holds up the loop (health checks, other requests) for long.

The body's caps (payloads.py, uploads.py) make the worst small body cheap: at INLINE_BODY_BYTES
(4 KiB) the worst JSON is some 2,000 temperatures and the worst PNG carries 64 text chunks, each a
fraction of a millisecond to parse and check. Normal requests are far smaller (a /sample body is
~100 bytes, a 32x32 PNG upload ~1 KB) and never pay the hop to a thread and back (event-loop CPU,
and the wait for the thread). Larger bodies (big images,
latents, hostile lists) go to the thread. It is not the engine's: that one runs the model passes,
which a parse must not delay. One thread, because parsing holds the GIL for most of its work: a
second one would parse no faster and take the GIL from the event loop more often.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from starlette.requests import ClientDisconnect, Request

from ..errors import Cancelled

T = TypeVar("T")
P = ParamSpec("P")

INLINE_BODY_BYTES = 4 * 2**10


class Parser:
    """Runs body parsing inline or on its own thread, by body size."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vae-parse")

    async def run(self, nbytes: int, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if nbytes <= INLINE_BODY_BYTES:
            return fn(*args, **kwargs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


async def read_body(request: Request) -> bytes:
    """The whole body (its size, time and share of the memory budget are guarded by the middleware)."""
    try:
        return await request.body()
    except ClientDisconnect:
        raise Cancelled("the client disconnected while sending the body") from None
