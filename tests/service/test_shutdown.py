"""End to end with `python -m service` itself: SIGTERM turns readiness to 503, refuses new work,
finishes the queued and running requests, closes each connection after its answer, answers a
connection still without its request at the end instead of resetting it, and exits 0."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from .conftest import REPO, free_port, metric_value, start_service


def test_sigterm_drains_in_flight_work_and_exits_0(model_dir: Path) -> None:
    # A 1 s batch window that always runs its course keeps the requests queued long enough to send
    # SIGTERM while they wait.
    proc, url = start_service(
        model_dir, "--max-batch-delay-ms", "1000", "--no-batch-early-close", "--shutdown-timeout-s", "20"
    )
    try:
        results: list[tuple[int, str]] = []

        def request(seed: int) -> None:
            answer = httpx.post(url + "/sample", json={"n": 2, "seed": seed}, timeout=30)
            results.append((answer.status_code, answer.headers.get("connection", "")))

        clients = [threading.Thread(target=request, args=(i,)) for i in range(3)]
        for c in clients:
            c.start()
        deadline = time.monotonic() + 10
        while metric_value(httpx.get(url + "/metrics").text, "vae_queue_depth", operation="sample") < 6:
            assert time.monotonic() < deadline
            time.sleep(0.02)

        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)  # the server notices the signal within 0.1 s
        ready = httpx.get(url + "/health/ready", timeout=5)
        assert ready.status_code == 503
        assert ready.json()["type"] == "/problems/shutting-down"
        # Liveness stays 200 while draining: a liveness probe must not restart a draining replica.
        assert httpx.get(url + "/health/live", timeout=5).status_code == 200
        refused = httpx.post(url + "/sample", json={"n": 1}, timeout=5)
        assert refused.status_code == 503
        assert refused.json()["type"] == "/problems/shutting-down"
        assert refused.headers["connection"] == "close"

        for c in clients:
            c.join(timeout=30)
        # The queued work finished, and its answers, given while draining, close their connections.
        assert results == [(200, "close")] * 3
        output, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, output
        assert "draining" in output and "drained" in output
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_connection_without_its_request_at_the_end_is_answered_not_reset(model_dir: Path) -> None:
    """A client that has connected but not yet sent its request when the server ends (as a load
    balancer's next request does) still gets an answer: 503 shutting-down, which it can retry
    elsewhere. Closing the connection would reset the request it sends."""
    proc, url = start_service(model_dir)
    try:
        with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=10) as conn:
            proc.send_signal(signal.SIGTERM)
            assert proc.stdout is not None
            # uvicorn logs this line, then closes the listening socket and ends the connections in the
            # same turn of its event loop: once it is read, the server has ended this one.
            for line in proc.stdout:
                if "Shutting down" in line:
                    break
            body = json.dumps({"n": 1}).encode()
            head = b"POST /sample HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            conn.sendall(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
            answer = b""
            while chunk := conn.recv(65536):
                answer += chunk
        status_line_and_headers, _, payload = answer.partition(b"\r\n\r\n")
        assert status_line_and_headers.startswith(b"HTTP/1.1 503"), answer
        assert b"connection: close" in status_line_and_headers.lower()
        assert json.loads(payload)["type"] == "/problems/shutting-down"
        output, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, output
    finally:
        if proc.poll() is None:
            proc.kill()


def test_no_model_folders_exits_2_with_a_clear_message(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "service", "--model-dir", str(tmp_path), "--port", str(free_port())],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "no model folders" in proc.stderr and str(tmp_path) in proc.stderr


def test_bad_setting_exits_2_naming_the_flag() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "service", "--max-batch-size", "0"], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "--max-batch-size" in proc.stderr
