"""The connection protocol's writes: uvicorn's HTTP protocol with our transport sends each answer in
one write (head and body together), sends what is pending before a close, and nothing after the
client has gone; while the service drains, each answer closes its connection, and a connection is
owed an answer while its request is under way or is likely on its way. The protocol runs on a real
event loop with a transport that records its writes."""

from __future__ import annotations

import asyncio
import time

import pytest
import uvicorn
from uvicorn.server import ServerState

from service.http.connections import (
    FIRST_REQUEST_S,
    CoalescingTransport,
    ConnectionLimits,
    LimitedHttpToolsProtocol,
    protocol_class,
)
from service.settings import Settings


class RecordingTransport(asyncio.Transport):
    """What a connection's protocol wrote, call by call."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def hello(scope, receive, send) -> None:
    """An ASGI app that answers in two messages, as every Starlette response does."""
    if scope["type"] != "http":
        return
    await receive()
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"5")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"hello"})


def new_connection(draining: bool = False) -> tuple[LimitedHttpToolsProtocol, RecordingTransport]:
    config = uvicorn.Config(hello, log_level="warning")
    config.load()
    limits = ConnectionLimits.from_settings(Settings(), draining=lambda: draining)
    protocol = protocol_class(limits)(config, ServerState(), app_state={})
    transport = RecordingTransport()
    protocol.connection_made(transport)
    return protocol, transport


async def answer(transport: RecordingTransport) -> None:
    for _ in range(100):  # the app's task, then the send scheduled at the end of its turn
        await asyncio.sleep(0)
        if transport.writes:
            break
    await asyncio.sleep(0)


async def answer_one(request: bytes, draining: bool = False) -> RecordingTransport:
    protocol, transport = new_connection(draining)
    protocol.data_received(request)
    await answer(transport)
    protocol.connection_lost(None)
    return transport


def test_an_answer_goes_out_in_one_write() -> None:
    transport = asyncio.run(answer_one(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert len(transport.writes) == 1, transport.writes
    head, _, body = transport.writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and body == b"hello"


def test_a_closing_answer_is_sent_before_the_close() -> None:
    transport = asyncio.run(answer_one(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    assert transport.closed
    assert len(transport.writes) == 1 and transport.writes[0].endswith(b"hello")


@pytest.mark.parametrize("then", ["turn", "close", "write_eof"])
def test_writes_of_one_turn_are_joined_in_order(then: str) -> None:
    async def run() -> RecordingTransport:
        inner = RecordingTransport()
        inner.write_eof = lambda: inner.writes.append(b"<eof>")  # type: ignore[method-assign]
        transport = CoalescingTransport(inner, asyncio.get_running_loop())
        transport.write(b"a")
        transport.write(b"b")
        assert inner.writes == []  # nothing sent within the turn
        if then == "close":
            transport.close()
        elif then == "write_eof":
            transport.write_eof()
        await asyncio.sleep(0)
        transport.write(b"c") if then == "turn" else None
        await asyncio.sleep(0)
        return inner

    inner = asyncio.run(run())
    expected = {"turn": [b"ab", b"c"], "close": [b"ab"], "write_eof": [b"ab", b"<eof>"]}[then]
    assert inner.writes == expected
    assert inner.closed == (then == "close")


def test_nothing_is_sent_after_the_client_has_gone() -> None:
    async def run() -> RecordingTransport:
        inner = RecordingTransport()
        transport = CoalescingTransport(inner, asyncio.get_running_loop())
        transport.write(b"late")
        inner.closed = True  # the peer closed the connection within the turn
        await asyncio.sleep(0)
        transport.write(b"later")
        transport.abort()
        await asyncio.sleep(0)
        return inner

    inner = asyncio.run(run())
    assert inner.writes == []


def test_while_draining_an_answer_closes_its_connection() -> None:
    transport = asyncio.run(answer_one(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", draining=True))
    head, _, body = transport.writes[0].partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower() and body == b"hello"
    assert transport.closed


def test_a_connection_is_owed_an_answer_while_its_request_is_under_way_or_likely_on_its_way() -> None:
    async def run() -> None:
        protocol, transport = new_connection()
        start = time.monotonic()
        assert protocol.owed_answer(start)  # new: its first request is likely on its way
        assert not protocol.owed_answer(start + FIRST_REQUEST_S + 0.1)  # no request came
        protocol.data_received(b"GET / HTTP/1.1\r\nHo")
        assert protocol.owed_answer(start + FIRST_REQUEST_S + 0.1)  # its head is under way
        protocol.data_received(b"st: x\r\n\r\n")
        assert protocol.owed_answer(start + FIRST_REQUEST_S + 0.1)  # computing
        await answer(transport)
        assert transport.writes and not transport.closed
        assert not protocol.owed_answer(time.monotonic())  # answered, kept alive, idle
        protocol.connection_lost(None)

    asyncio.run(run())
