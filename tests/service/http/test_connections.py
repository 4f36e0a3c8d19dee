"""The connection protocol's writes: uvicorn's HTTP protocol with our transport sends each answer in
one write (head and body together), sends what is pending before a close, and nothing after the
client has gone. The protocol runs on a real event loop with a transport that records its writes."""

from __future__ import annotations

import asyncio

import pytest
import uvicorn
from uvicorn.server import ServerState

from service.http.connections import CoalescingTransport, ConnectionLimits, protocol_class
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


async def answer_one(request: bytes) -> RecordingTransport:
    config = uvicorn.Config(hello, log_level="warning")
    config.load()
    protocol = protocol_class(ConnectionLimits.from_settings(Settings()))(config, ServerState(), app_state={})
    transport = RecordingTransport()
    protocol.connection_made(transport)
    protocol.data_received(request)
    for _ in range(100):  # the app's task, then the send scheduled at the end of its turn
        await asyncio.sleep(0)
        if transport.writes:
            break
    await asyncio.sleep(0)
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
