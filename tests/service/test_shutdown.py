"""End to end with `python -m service` itself: SIGTERM turns readiness to 503, refuses new work,
finishes the queued and running requests, and exits 0."""

from __future__ import annotations

import signal
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
        results: list[int] = []

        def request(seed: int) -> None:
            results.append(httpx.post(url + "/sample", json={"n": 2, "seed": seed}, timeout=30).status_code)

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

        for c in clients:
            c.join(timeout=30)
        assert results == [200, 200, 200]  # the queued work finished
        output, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, output
        assert "draining" in output and "drained" in output
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
