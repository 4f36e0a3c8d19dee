"""`python -m service` itself, in a subprocess: memory comes back after a burst of large bodies,
SIGTERM ends in bounded time whatever a slow uploader does, and the service starts and serves on a
read-only root filesystem with TMPDIR and HOME pointing at a read-only folder."""

from __future__ import annotations

import base64
import functools
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from ..conftest import digit_like, png_bytes, start_service
from .wire import connect, parse, read_until_closed, send_slowly

QUIET = ("--no-access-log", "--log-level", "info")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc")
def test_memory_comes_back_after_a_burst_of_large_bodies(model_dir: Path) -> None:
    # Without the endpoints' own limits, so the 15 MiB bodies are read and parsed, as a model with
    # large images would take them.
    proc, url = start_service(model_dir, *QUIET, "--no-endpoint-body-limits")
    try:
        with httpx.Client(base_url=url, timeout=60) as c:
            png = png_bytes(digit_like())
            for i in range(20):  # steady state: every operation, a few times
                assert c.post("/sample", json={"n": 8, "seed": i}).status_code == 200
                assert c.post("/encode", files={"image": ("x.png", png)}).status_code == 200
        time.sleep(1.5)
        steady = rss_mb(proc.pid)

        # 40 concurrent 15 MiB bodies: a valid PNG followed by 11 MiB of bytes, base64 in JSON.
        body = {"image_b64": base64.b64encode(png + os.urandom(11 * 2**20)).decode(), "seed": 0}
        codes: list[int] = []

        def send() -> None:
            with httpx.Client(base_url=url, timeout=120) as c:
                codes.append(c.post("/encode", json=body).status_code)

        threads = [threading.Thread(target=send) for _ in range(40)]
        peak = steady
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            peak = max(peak, rss_mb(proc.pid))
            time.sleep(0.05)
        assert set(codes) <= {200, 503} and 200 in codes, codes  # 503: the body budget was full

        deadline = time.monotonic() + 5  # "within a few seconds of the last large request"
        while (now := rss_mb(proc.pid)) > steady + 100 and time.monotonic() < deadline:
            time.sleep(0.1)
        later = time.monotonic() - deadline + 5
        figures = f"steady {steady:.0f} MB, peak {peak:.0f} MB, {later:.1f} s later {now:.0f} MB"
        print(figures, f"({codes.count(200)} answered, {codes.count(503)} over the body budget)")
        assert now <= steady + 100, figures
    finally:
        proc.kill()
        proc.communicate()


def test_sigterm_with_a_slow_uploader_exits_in_bounded_time(model_dir: Path) -> None:
    drain_s, close_s = 2.0, 1.0
    proc, url = start_service(
        model_dir, *QUIET, "--shutdown-timeout-s", str(drain_s), "--shutdown-close-s", str(close_s),
        "--body-timeout-s", "120", "--request-timeout-s", "120",
    )  # fmt: skip
    port = int(url.rsplit(":", 1)[1])
    try:
        sock = connect(port)
        head = "POST /encode HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100000"
        sock.sendall(head.encode() + b"\r\n\r\n{")
        time.sleep(0.5)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        send_slowly(sock, b" " * 100_000, every_s=0.2, until=sent + 30)  # one byte every 0.2 s
        answer = read_until_closed(sock, timeout_s=10)
        answered = time.monotonic() - sent
        proc.wait(timeout=30)
        took = time.monotonic() - sent
        print(f"answered {answered:.1f} s, exited {took:.1f} s after SIGTERM")
        assert proc.returncode == 0
        assert took < drain_s + close_s + 3, f"exit {took:.1f} s after SIGTERM"
        assert answered < drain_s + close_s + 2, f"answered {answered:.1f} s after SIGTERM"
        response = parse(answer)
        if response is not None:  # a proper answer, or none at all (a closed connection)
            assert response.status == 503, answer[:300]
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["type"] == "/problems/shutting-down"
        assert b"Internal Server Error" not in answer
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


@functools.cache
def can_mount_read_only() -> bool:
    try:
        done = subprocess.run(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", READ_ONLY_ROOT + " && true"],
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


# In a private mount namespace (nothing outside it changes): the root, and /tmp and /var/tmp where
# they are mounts of their own, read-only, as a container's `read_only: true` without a tmpfs.
READ_ONLY_ROOT = (
    "mount --bind / / && mount -o remount,bind,ro / && "
    "for d in /tmp /var/tmp; do "
    "if mountpoint -q $d; then mount --bind $d $d && mount -o remount,bind,ro $d; fi; done"
)
IN_READ_ONLY_ROOT = [
    "unshare",
    "-m",
    "--propagation",
    "private",
    "sh",
    "-c",
    READ_ONLY_ROOT + ' && exec "$@"',
    "sh",
]


@pytest.mark.skipif(not can_mount_read_only(), reason="needs root and mount namespaces (unshare -m)")
def test_starts_and_serves_on_a_read_only_root(model_dir: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "TMPDIR": str(home), "HOME": str(home)}
    env.pop("TORCHINDUCTOR_CACHE_DIR", None)
    # Without the endpoints' own limits, which would refuse the 2 MiB upload for these small models.
    flags = (*QUIET, "--no-endpoint-body-limits")
    proc, url = start_service(model_dir, *flags, prefix=IN_READ_ONLY_ROOT, env=env, cwd=home)
    try:
        with httpx.Client(base_url=url, timeout=60) as c:
            assert c.post("/sample", json={"n": 2, "seed": 0}).status_code == 200
            # An upload larger than anything kept in memory by default (1 MiB) is still parsed.
            big = png_bytes(digit_like()) + b"\x00" * (2 * 2**20)
            r = c.post("/encode", files={"image": ("x.png", big)})
            assert r.status_code == 200, r.text
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    assert "no writable temporary directory" in output, output
    assert proc.returncode == 0, output


@pytest.mark.skipif(not can_mount_read_only(), reason="needs root and mount namespaces (unshare -m)")
def test_compile_without_a_writable_directory_stops_with_a_clear_message(
    model_dir: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path), "HOME": str(tmp_path)}
    command = [sys.executable, "-m", "service", "--model-dir", str(model_dir), "--compile"]
    done = subprocess.run(
        [*IN_READ_ONLY_ROOT, *command],
        cwd=tmp_path, env={**env, "PYTHONPATH": os.environ.get("PYTHONPATH", "")}, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "--compile needs a writable temporary directory" in done.stderr and "tmpfs" in done.stderr
