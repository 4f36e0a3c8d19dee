"""The benchmark's load generator (a raw keep-alive HTTP/1.1 client) and its per-thread CPU reader."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time

from service.bench.loadgen import HttpConnection, ThreadCpu

from ..conftest import RunningServer


def test_one_connection_serves_many_requests_and_reads_chunked_answers(server: RunningServer) -> None:
    async def run() -> None:
        connection = HttpConnection(server.url)
        try:
            for seed in (1, 2):
                body = json.dumps({"n": 2, "seed": seed}).encode()
                status, payload = await connection.request("POST", "/sample", body, "application/json")
                assert status == 200 and [d["seed"] for d in json.loads(payload)["data"]] == [seed, seed + 1]
            writer = connection._writer
            status, payload = await connection.request("GET", "/health/live")
            assert status == 200 and json.loads(payload)["status"] == "live"
            assert connection._writer is writer  # kept alive: the same connection all along
            # Server-sent events come chunked (no Content-Length): read to the last chunk.
            body = json.dumps({"n": 1, "seed": 3}).encode()
            status, payload = await connection.request("POST", "/sample/stream", body, "application/json")
            assert status == 200 and payload.rstrip().splitlines()[0].startswith(b"event: ")
            assert b"event: final" in payload
            status, _ = await connection.request("POST", "/sample", b"{", "application/json")
            assert status == 400 or status == 422  # an error answer leaves the connection usable
            status, _ = await connection.request("GET", "/health/live")
            assert status == 200
        finally:
            connection.close()

    asyncio.run(run())


def test_thread_cpu_tells_the_main_thread_from_the_others() -> None:
    cpu = ThreadCpu(os.getpid())
    before = cpu.sample()

    def burn() -> None:
        t0 = time.thread_time()
        while time.thread_time() - t0 < 0.3:
            pass

    worker = threading.Thread(target=burn)
    worker.start()
    worker.join()  # the thread has ended: its time must still count
    after = cpu.sample()
    assert after.others_s - before.others_s >= 0.25
    assert after.loop_s - before.loop_s < 0.25  # the main thread only waited
    assert ThreadCpu.available(os.getpid()) and not ThreadCpu.available(None)
