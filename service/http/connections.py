"""The HTTP/1.1 connection: uvicorn's httptools protocol, with the limits it lacks.

With httptools (the fast parser, ~0.2 ms less CPU per request than h11 here) uvicorn bounds
neither the size of a request's head nor the time a client takes to send it, and arms its
keep-alive timer only after a first response, so a connection that never sends a request stays
open for ever. This subclass adds, per connection:

- 431 (problem+json, then close) when the request line and headers pass max_header_bytes, checked
  before the bytes reach the parser;
- 408 (then close) when the head is not complete within header_timeout_s of its first byte;
- a close after keepalive_timeout_s without a request: from the connection's start, and from the end
  of each response (bytes of an unread body do not count as activity);
- the flag OVER_CONNECTION_LIMIT on the requests of a connection beyond max_connections, which the
  request tracking middleware answers with 503 and a close;
- a problem+json 400 instead of uvicorn's plain-text one for bytes that are not HTTP;
- while the service drains (`drain`, `owed_answer`, `shutdown`): each answer closes its connection,
  and a connection that has not sent its request yet is answered (503 shutting-down) rather than
  closed, even at the server's end; a client has often sent that request already, and closing would
  reset it instead of refusing it.

After such an answer the connection stops sending and reads (and drops) what the client still sends
for LINGER_S before it closes: closing with unread bytes resets the connection, and the client,
still sending its head, would see the reset instead of the answer.

Time limits are checked by `check_timeouts`, which the server calls on every connection every tick
(0.1 s), so a request costs no timer of its own.

The connection's writes go out once per turn of the event loop (`CoalescingTransport`): uvicorn
writes an answer's head and its body separately, each a system call, and under load those calls are
a large share of the event loop's own work.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..errors import HeadersTooLarge, MalformedRequest, RequestTimeout, ServiceError, problem_bytes
from ..metrics import Metrics
from ..settings import Settings

log = logging.getLogger("service.connections")

HEAD_END = b"\r\n\r\n"
LINGER_S = 1.0
# How long a new connection is expected to take to begin its request: while draining, such a
# connection is owed an answer this long; at the server's end, it may still send its request for
# this long.
FIRST_REQUEST_S = 1.0
# Set in scope["state"] on the requests of a connection beyond max_connections (the request tracking
# middleware answers them).
OVER_CONNECTION_LIMIT = "over_connection_limit"


def new_request_id() -> str:
    """32 random hex digits. Not uuid4: its os.urandom is a system call that gives up the GIL, and
    the event loop then waited for the engine thread to hand it back; a request id needs to be
    unique, not unpredictable."""
    return f"{random.getrandbits(128):032x}"


def never() -> bool:
    return False


@dataclass(frozen=True)
class ConnectionLimits:
    max_header_bytes: int
    header_timeout_s: float
    idle_timeout_s: float
    max_connections: int
    metrics: Metrics | None = None
    draining: Callable[[], bool] = never  # whether the service is draining: answers then close

    @classmethod
    def from_settings(
        cls, settings: Settings, metrics: Metrics | None = None, draining: Callable[[], bool] = never
    ) -> ConnectionLimits:
        return cls(
            max_header_bytes=settings.max_header_bytes,
            header_timeout_s=settings.header_timeout_s,
            idle_timeout_s=settings.keepalive_timeout_s,
            max_connections=settings.max_connections,
            metrics=metrics,
            draining=draining,
        )


def protocol_class(limits: ConnectionLimits) -> type[LimitedHttpToolsProtocol]:
    """The protocol class uvicorn builds one of per connection (`uvicorn.Config(http=...)`)."""
    return type("LimitedHttpToolsProtocol", (LimitedHttpToolsProtocol,), {"limits": limits})


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    limits: ClassVar[ConnectionLimits]

    def connection_made(self, transport) -> None:
        super().connection_made(CoalescingTransport(transport, self.loop))
        self._over_limit = len(self.connections) > self.limits.max_connections
        self._idle_since: float | None = time.monotonic()  # no request under way
        self._head_since: float | None = None  # a request head is being received
        self._head_bytes = 0  # of the head being received, in earlier data
        self._in_message = False  # between a request's first byte and its last
        self._refused_at: float | None = None  # when an answer below the app was sent
        self._connected_at = time.monotonic()
        self._requests = 0  # begun on this connection
        self._last_request = False  # draining: the request under way, or the next, is the last

    def data_received(self, data: bytes) -> None:
        if self._refused_at is not None:  # lingering: drop it
            return
        if not self._in_message or self._head_since is not None:  # the bytes start or continue a head
            end = data.find(HEAD_END)
            head = self._head_bytes + (len(data) if end < 0 else end + len(HEAD_END))
            if head > self.limits.max_header_bytes:
                limit = self.limits.max_header_bytes
                self._refuse(HeadersTooLarge(f"the request line and headers pass the limit of {limit} bytes"))
                return
            if end < 0:
                self._head_bytes = head
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._requests += 1
        self._in_message = True
        self._idle_since = None
        self._head_since = time.monotonic()

    def on_headers_complete(self) -> None:
        self._head_since = None
        self._head_bytes = 0
        if self._over_limit:
            self.scope["state"][OVER_CONNECTION_LIMIT] = True
        super().on_headers_complete()
        if (self._last_request or self.limits.draining()) and self.cycle is not None:
            self.cycle.keep_alive = False  # the answer says Connection: close

    def on_message_complete(self) -> None:
        self._in_message = False
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self._in_message and self.cycle is not None and self.cycle.response_complete:
            self._idle_since = time.monotonic()

    def send_400_response(self, msg: str) -> None:
        self._refuse(MalformedRequest("the bytes received are not a valid HTTP/1.1 request"))

    def check_timeouts(self, now: float) -> None:
        """Close a connection whose head is overdue (408) or that has been idle too long."""
        if self.transport.is_closing():
            return
        if self._refused_at is not None:
            if now - self._refused_at > LINGER_S:
                self.transport.close()
            return
        if self._head_since is not None and now - self._head_since > self.limits.header_timeout_s:
            timeout = self.limits.header_timeout_s
            self._refuse(RequestTimeout(f"the request headers were not received within {timeout:g} s"))
        elif self._idle_since is not None and now - self._idle_since > self.limits.idle_timeout_s:
            self.transport.close()

    def drain(self) -> None:
        """The service is draining: the request this connection carries now, or its next one, is its
        last (the answer says Connection: close), so that no client reuses it as the server ends."""
        self._last_request = True
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False

    def owed_answer(self, now: float) -> bool:
        """A request is under way (its head, its computation or its answer), or the connection is
        new and its first request is likely on the way: the server does not end while one is."""
        if self._refused_at is not None or self.transport.is_closing():
            return False
        if self._in_message or (self.cycle is not None and not self.cycle.response_complete):
            return True
        return self._requests == 0 and now - self._connected_at < FIRST_REQUEST_S

    def shutdown(self) -> None:
        """The server's end (uvicorn closes the listening socket, then calls this). A connection
        whose first request has not come in full (none yet, or its head under way) gets
        FIRST_REQUEST_S to send it and is answered (503 shutting-down, then a close); uvicorn's own
        shutdown would close it at once, and a request already on the wire would meet a reset."""
        if self._refused_at is None and self.cycle is None and not self.transport.is_closing():
            self.drain()
            self.loop.call_later(FIRST_REQUEST_S, self._close_without_request)
            return
        super().shutdown()

    def _close_without_request(self) -> None:
        if self.cycle is None and not self.transport.is_closing():
            self.transport.close()

    def _refuse(self, error: ServiceError) -> None:
        """Answer `error` (problem+json) on the wire, then linger and close the connection."""
        self._refused_at = time.monotonic()
        request_id = new_request_id()
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "?"
        log.info("%s: %d %s (request_id %s)", client, error.status, error.detail, request_id)
        if self.limits.metrics is not None:
            self.limits.metrics.failures.labels(reason=error.reason).inc()
        if self.transport.is_closing():
            return
        status, headers, payload = problem_bytes(error, instance="", request_id=request_id, close=True)
        head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode()]
        head += [name + b": " + value + b"\r\n" for name, value in headers]
        self.transport.write(b"".join([*head, b"\r\n", payload]))
        if self.transport.can_write_eof():
            self.transport.write_eof()  # the answer is complete; what still arrives is dropped
        else:
            self.transport.close()


class CoalescingTransport:
    """A transport whose writes of one event-loop turn go out as one: the first write of a turn
    schedules the send (call_soon) and later ones join it, so an answer's head and body cost one
    system call instead of two. Closing sends what is pending first; everything else is the
    wrapped transport's (flow control included: its pause_writing reaches the protocol as before)."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def flush(self) -> None:
        """Send what was written in this turn (nothing when it was sent already, or when the
        connection has closed since: a client that left gets nothing more)."""
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()

    def __getattr__(self, name: str) -> object:  # is_closing, pause_reading, get_extra_info, ...
        return getattr(self._transport, name)
