"""Pure ASGI middleware (no BaseHTTPMiddleware, which would hide client disconnects from the routes):

- RequestTrackingMiddleware: a request id (the client's X-Request-ID when sane, else a new one) on
  `request.state.request_id` and the response, the arrival time, and the per-request metrics; and the
  answers the app cannot give itself: 503 on a connection beyond max_connections (the protocol flags
  it), a 500 problem with the request id that closes the connection for an unexpected error, and a
  503 problem for a request still running when shutdown cancels it.
- BodyGuardMiddleware: for requests that may carry a body: 413 above the endpoint's limit (the
  served models' largest valid body, inputs/body_limits.py) or else max_body_bytes (from Content-Length
  before reading anything, else by counting), 408 when the body is not in within
  body_timeout_s (or the request deadline, if sooner), and 503 with Retry-After when the bodies held
  at once would pass max_body_bytes_in_flight.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import (
    BodyBudgetFull,
    BodyTooLarge,
    RequestTimeout,
    ServiceError,
    ShuttingDown,
    TooManyConnections,
    internal_error,
    problem_bytes,
)
from ..metrics import Metrics
from ..settings import Settings
from .connections import OVER_CONNECTION_LIMIT, new_request_id
from .memory import ByteBudget, HeapTrimmer

log = logging.getLogger("service")

REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
DISCONNECT: Message = {"type": "http.disconnect"}


async def send_problem(
    send: Send, scope: Scope, error: ServiceError, metrics: Metrics, close: bool = False
) -> None:
    """Answer with `error` from below the app, and count it as a failure (once)."""
    state = scope.setdefault("state", {})
    state["answered"] = True  # an error answer the app may still give is not counted again
    metrics.failures.labels(reason=error.reason).inc()
    path, request_id = scope.get("path", ""), state.get("request_id")
    status, headers, payload = problem_bytes(error, path, request_id, close=close)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class RequestTrackingMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics, static_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.metrics = metrics
        # Paths that are their own route template, to label answers given before routing (413s).
        self.static_paths = static_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.monotonic()
        given = _header(scope, b"x-request-id")
        request_id = given if given and REQUEST_ID_PATTERN.match(given) else new_request_id()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["arrival"] = start
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            if state.get(OVER_CONNECTION_LIMIT):
                error = TooManyConnections("too many open connections; retry", headers={"Retry-After": "1"})
                await send_problem(send_with_id, scope, error, self.metrics, close=True)
            else:
                await self.app(scope, receive, send_with_id)
        except asyncio.CancelledError:  # shutdown's last step cancels what still runs
            if status:  # the answer has begun: uvicorn closes the connection
                raise
            method, path = scope["method"], scope["path"]
            log.info("%s %s cancelled at shutdown (request_id %s)", method, path, request_id)
            error = ShuttingDown("the service stopped before this request was finished; retry")
            await send_problem(send_with_id, scope, error, self.metrics, close=True)
            # Not raised on: this task ends here, answered, and uvicorn logs no traceback for it.
        except Exception:
            if status:  # the answer has begun: all that is left is closing the connection
                raise
            log.exception(
                "unhandled error on %s %s (request_id %s)", scope["method"], scope["path"], request_id
            )
            await send_problem(send_with_id, scope, internal_error(), self.metrics, close=True)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None)  # the template, never the raw path
            if endpoint is None:
                endpoint = scope["path"] if scope["path"] in self.static_paths else "other"
            code = str(status or 500)
            self.metrics.answered(endpoint, code, time.monotonic() - start)


# Methods whose requests carry no body we read: they skip the guard at no cost.
BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})
# Bodies up to this size are not counted in the byte budget: max_connections of them are a few MB,
# and slow uploads of large bodies filling the budget must not lock out every small request.
UNCOUNTED_BODY_BYTES = 4 * 2**10

if sys.version_info >= (3, 11):

    async def _receive_within(receive: Receive, seconds: float) -> Message:
        async with asyncio.timeout(seconds):  # a timer, no task: a few microseconds
            return await receive()

else:  # pragma: no cover - Python 3.10

    async def _receive_within(receive: Receive, seconds: float) -> Message:
        return await asyncio.wait_for(receive(), seconds)


class BodyGuardMiddleware:
    """413, 408 and 503 (budget) for request bodies. The rest of an oversized body (up to DRAIN_BYTES)
    is read and dropped before the 413: closing a socket with unread data resets the connection, and
    the client would see a reset instead of the answer."""

    DRAIN_BYTES = 64 * 2**20

    def __init__(
        self,
        app: ASGIApp,
        settings: Settings,
        metrics: Metrics,
        budget: ByteBudget,
        trimmer: HeapTrimmer,
        endpoint_limits: dict[str, int],
    ) -> None:
        """endpoint_limits: {path: most body bytes}, filled in once the models are loaded; other
        paths (and every path before then) take max_body_bytes."""
        self.app = app
        self.max_body_bytes = settings.max_body_bytes
        self.endpoint_limits = endpoint_limits
        self.oversized_delay_s = settings.oversized_body_delay_s
        self.read_s = min(settings.body_timeout_s, settings.request_timeout_s)
        self.metrics = metrics
        self.budget = budget
        self.trimmer = trimmer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in BODYLESS_METHODS:
            await self.app(scope, receive, send)
            return
        await _GuardedRequest(self, scope, receive, send).run()


class _GuardedRequest:
    """One request's body, read under the guard's limits."""

    def __init__(self, guard: BodyGuardMiddleware, scope: Scope, receive: Receive, send: Send) -> None:
        self.guard, self.scope, self._receive, self._send = guard, scope, receive, send
        self.limit = guard.endpoint_limits.get(scope["path"], guard.max_body_bytes)
        arrival = scope.get("state", {}).get("arrival", time.monotonic())
        self.deadline = arrival + guard.read_s
        self.received = 0  # body bytes so far
        self.held = 0  # of those, reserved in the budget
        self.rejected = False
        self.body_done = False

    async def run(self) -> None:
        guard = self.guard
        declared = _header(self.scope, b"content-length")
        if declared is not None and declared.isdigit():
            size = int(declared)
            if size > self.limit:
                # A pause before the answer: a client looping oversized bodies is held to a few a
                # second per connection instead of costing a read of each at full speed.
                await asyncio.sleep(guard.oversized_delay_s)
                if size <= self.limit + guard.DRAIN_BYTES:
                    await self._drain()
                await self._reject(BodyTooLarge(f"the body has {size} bytes; {self._limit_text()}"))
                return
            if size > UNCOUNTED_BODY_BYTES and not self._reserve(size):
                await self._reject(self._budget_full())
                return
        try:
            await guard.app(self.scope, self.receive, self.send)
        except Exception:
            if not self.rejected:
                raise
        finally:
            if self.held:
                guard.budget.give(self.held)
                guard.trimmer.released(self.held)

    def _limit_text(self) -> str:
        if self.limit < self.guard.max_body_bytes:
            return f"the limit of {self.scope['path']} for the served models is {self.limit} bytes"
        return f"the limit is {self.limit} bytes"

    def _reserve(self, nbytes: int) -> bool:
        if not self.guard.budget.take(nbytes):
            return False
        self.held += nbytes
        return True

    def _budget_full(self) -> BodyBudgetFull:
        return BodyBudgetFull(
            f"the service is reading or processing {self.guard.budget.held} bytes of request bodies, "
            "its limit; retry shortly",
            headers={"Retry-After": "1"},
        )

    async def receive(self) -> Message:
        if self.rejected:
            return DISCONNECT
        if self.body_done:  # later receives only wait for the client to go away
            return await self._receive()
        try:
            message = await _receive_within(self._receive, self.deadline - time.monotonic())
        except asyncio.TimeoutError:
            detail = f"the request body was not received within {self.guard.read_s:g} s"
            await self._reject(RequestTimeout(detail), close=True)
            return DISCONNECT
        if message["type"] != "http.request":
            return message
        chunk = len(message.get("body", b""))
        self.received += chunk
        more = message.get("more_body", False)
        if self.received > self.limit:
            if more:
                await self._drain()
            await self._reject(BodyTooLarge(f"the request body is larger than allowed: {self._limit_text()}"))
            return DISCONNECT  # the app stops; whatever it answers is dropped by send()
        over = self.received > UNCOUNTED_BODY_BYTES and self.received > self.held  # no Content-Length
        if over and not self._reserve(self.received - self.held):
            await self._reject(self._budget_full(), close=more)
            return DISCONNECT
        self.body_done = not more
        return message

    async def send(self, message: Message) -> None:
        if not self.rejected:
            await self._send(message)

    async def _drain(self) -> None:
        """Read and drop the rest of the body, up to DRAIN_BYTES and within the body deadline."""
        drained = 0
        while drained <= self.guard.DRAIN_BYTES:
            try:
                message = await _receive_within(self._receive, self.deadline - time.monotonic())
            except asyncio.TimeoutError:
                return
            if message["type"] != "http.request":
                return
            drained += len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    async def _reject(self, error: ServiceError, close: bool = False) -> None:
        if self.rejected:
            return
        self.rejected = True
        await send_problem(self._send, self.scope, error, self.guard.metrics, close=close)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None
