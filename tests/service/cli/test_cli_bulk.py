"""Bulk sampling into a folder: split into requests of the model's batch size, killed with SIGKILL
mid-way and run again, it ends with every image written once, whole, and equal to the service's."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.cli.commands import build_parser
from service.cli.sampling import MANIFEST, requests_for
from service.cli.sampling import run as run_sample
from service.client import AsyncClient, Client

from ..conftest import REPO, RunningServer, running_server
from .test_cli import TIMEOUT_S, vdvae

N = 240


@pytest.fixture(scope="module")
def small_batches(model_dir: Path) -> Iterator[RunningServer]:
    """Batches of 2 images: a bulk run of N images takes N / 2 requests, long enough to kill it."""
    with running_server(model_dir, max_batch_size=2) as server:
        yield server


def test_requests_cover_the_missing_images_in_contiguous_runs() -> None:
    assert requests_for([0, 1, 2, 5, 6, 9], 2) == [(0, 2), (2, 1), (5, 2), (9, 1)]
    assert requests_for(range(5), 16) == [(0, 5)] and requests_for([], 4) == []


class Recording(httpx.AsyncBaseTransport):
    """A real HTTP transport that keeps each /sample request's body and the most requests in flight."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.bodies: list[dict] = []
        self.in_flight = self.most_in_flight = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path != "/sample":
            return await self.inner.handle_async_request(request)
        self.bodies.append(json.loads(request.content))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            return await self.inner.handle_async_request(request)
        finally:
            self.in_flight -= 1

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_bulk_work_goes_in_concurrent_requests_of_the_servers_batch_size(tmp_path, small_batches) -> None:
    n, concurrency = 15, 3
    args = build_parser("sample", "vdvae sample").parse_args(
        ["-n", str(n), "--seed", "40", "--concurrency", str(concurrency), "-o", str(tmp_path / "out")]
    )
    recording = Recording()

    async def bulk() -> None:
        async with AsyncClient(small_batches.url, transport=recording) as client:
            await run_sample(client, args)

    asyncio.run(bulk())
    # 7 requests of the server's 2 images and one of the last image, their seeds image i's (40 + i)
    sizes = sorted((body["seed"], body["n"]) for body in recording.bodies)
    assert sizes == [(40 + start, 2) for start in range(0, 14, 2)] + [(54, 1)]
    assert recording.most_in_flight == concurrency  # never more, and the work did overlap
    assert len(list((tmp_path / "out").glob("*.png"))) == n


def written(folder: Path) -> dict[str, tuple[int, int]]:
    """PNG name -> (inode, mtime_ns): a file rewritten, even with the same bytes, gets a new inode."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.glob("*.png")}


def test_a_killed_bulk_run_resumes_without_rewriting_or_losing_images(tmp_path, small_batches) -> None:
    folder = tmp_path / "samples"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VDVAE_")}
    env.update(PYTHONPATH=str(REPO), VDVAE_URL=small_batches.url)
    cmd = [sys.executable, "-m", "service.cli", "sample", "-n", str(N), "--seed", "100", "-o", str(folder)]
    first = subprocess.Popen([*cmd, "--concurrency", "2"], env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + TIMEOUT_S
    while len(list(folder.glob("*.png"))) < 20:
        assert first.poll() is None and time.monotonic() < deadline, "the run ended before it was killed"
        time.sleep(0.005)
    first.send_signal(signal.SIGKILL)
    first.wait()
    before = written(folder)
    assert 20 <= len(before) < N, "the run was not killed mid-way"

    second = vdvae("sample", "-n", str(N), "-o", str(folder), cwd=tmp_path, url=small_batches.url)
    after = written(folder)
    assert sorted(after) == [f"{i:06d}.png" for i in range(N)]
    assert {name: after[name] for name in before} == before  # none written twice
    assert f"({N - len(before)} written now, {len(before)} already there)" in second.stdout
    assert f"{N}/{N} [" in second.stderr  # tqdm's bar, started at the images already there
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]  # no partial file left
    assert json.loads((folder / MANIFEST).read_text())["seed"] == 100  # taken from the folder
    with Client(small_batches.url) as client:  # every image whole and the service's own
        expected = [im.png for start in range(0, N, 2) for im in client.sample(2, seed=100 + start)]
    assert [(folder / f"{i:06d}.png").read_bytes() for i in range(N)] == expected


def test_a_folder_of_other_samples_is_refused(tmp_path, server) -> None:
    vdvae("sample", "-n", "3", "--seed", "1", "-o", "out/", cwd=tmp_path, url=server.url)
    other = vdvae("sample", "-n", "3", "--seed", "2", "-o", "out/", cwd=tmp_path, url=server.url, check=False)
    assert other.returncode == 2 and "holds other samples (seed 1 there, 2 asked)" in other.stderr
    more = vdvae("sample", "-n", "5", "-o", "out/", cwd=tmp_path, url=server.url)
    assert "(2 written now, 3 already there)" in more.stdout
