"""A load generator cheap enough to share a small machine with the server it measures, and the CPU
of that server's threads.

`HttpConnection` is a raw HTTP/1.1 keep-alive client over asyncio streams: one pre-formatted head
per request, the answer read by Content-Length (or chunked). It costs a few tens of microseconds of
CPU per request on uvloop, where httpx's AsyncClient costs milliseconds, as much as the server
itself, and takes that CPU from the server it measures.
Kept in Python rather than driving `wrk` or `oha`: those are system tools a pip install does not
bring, and the bench needs what they do not give in one run (a fresh seed in every request's body,
each answer's status counted, the server's per-thread CPU and /metrics read over the same window).

`ThreadCpu` reads a process's CPU time from /proc (Linux): the event loop is the main thread, whose
thread id is the process id; every other thread (the engine's device thread, torch's intra-op
workers, the parsing thread) is counted as compute.

`spawned_server` starts the server to measure (`vdvae bench service --spawn`, `vdvae bench stress
--spawn`) on a free loopback port; `percentile` and `load_line` are how both report.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class HttpConnection:
    """One keep-alive HTTP/1.1 connection; reopens itself when the server closes it."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        content_type: str = "",
        timeout_s: float = 120.0,
        headers: str = "",
    ) -> tuple[int, bytes]:
        """(status, body) of one request; asyncio.TimeoutError after timeout_s (the connection closes).
        headers: extra header lines, each ending in CRLF (`head_lines` formats them)."""
        if sys.version_info >= (3, 11):
            async with asyncio.timeout(timeout_s):  # a timer, no task
                return await self._request(method, path, body, content_type, headers)
        return await asyncio.wait_for(self._request(method, path, body, content_type, headers), timeout_s)

    async def _request(
        self, method: str, path: str, body: bytes, content_type: str, headers: str
    ) -> tuple[int, bytes]:
        if self._reader is not None and self._reader.at_eof():  # the server closed it while idle
            self.close()
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{headers}"
        if body or method == "POST":
            head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        self._writer.write(head.encode("latin-1") + b"\r\n" + body)
        try:
            return await self._read_response()
        except BaseException:
            self.close()
            raise

    async def _read_response(self) -> tuple[int, bytes]:
        assert self._reader is not None
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            payload = await self._reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            payload = await self._read_chunked()
        else:  # the body runs to the end of the connection
            payload = await self._reader.read()
            headers["connection"] = "close"
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, payload

    async def _read_chunked(self) -> bytes:
        assert self._reader is not None
        chunks = []
        while size := int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16):
            chunks.append(await self._reader.readexactly(size))
            await self._reader.readexactly(2)
        await self._reader.readuntil(b"\r\n")  # no trailers are sent to us; the empty line
        return b"".join(chunks)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


def head_lines(headers: dict[str, str]) -> str:
    """Header lines for HttpConnection.request, formatted once per client rather than per request."""
    return "".join(f"{name}: {value}\r\n" for name, value in headers.items())


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds of a process so far: its main thread (the event loop) and all its other threads."""

    loop_s: float
    others_s: float


class ThreadCpu:
    """CPU time of one process's event loop (its main thread) and of the rest of it, from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    @staticmethod
    def available(pid: int | None) -> bool:
        return pid is not None and Path(f"/proc/{pid}/task/{pid}/stat").is_file()

    def sample(self) -> CpuSample:
        # The process's own line counts every thread, ended ones too; its main thread's line, itself.
        total = _cpu_seconds(Path(f"/proc/{self.pid}/stat"))
        loop = _cpu_seconds(Path(f"/proc/{self.pid}/task/{self.pid}/stat"))
        return CpuSample(loop_s=loop, others_s=total - loop)


def _cpu_seconds(stat: Path) -> float:
    """utime + stime of a /proc stat line (fields 14 and 15; the command before them may hold spaces)."""
    text = stat.read_text()
    fields = text[text.rindex(")") + 2 :].split()  # from field 3 on
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: always one of the measured values, never an interpolation between
    two (numpy's inverted_cdf); NaN for no values."""
    if not values:
        return math.nan
    return float(np.percentile(values, q, method="inverted_cdf"))


def load_line() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "load average: unavailable"
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


# --------------------------------------------------------------------------------------------
# Servers to measure: `python -m service` started on a free loopback port
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def spawned_server(flags: Sequence[str], ready_timeout_s: float = 300.0) -> Iterator[tuple[str, int]]:
    """`python -m service` on a free loopback port with `flags`; yields (its URL, its process id)
    once ready, then stops it with SIGTERM."""
    port = free_port()
    cmd = [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    cmd += flags
    print("$", " ".join(cmd), flush=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with {proc.returncode}:\n{proc.stderr.read()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/health/ready", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not become ready in time")
            time.sleep(0.2)
        yield url, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
