"""Fixtures for the service tests: real model folders on disk and real uvicorn servers on loopback.

Models: when the bundled checkpoint `weights/mnist/model.safetensors` exists, the served "mnist" is
that folder (linked), so the end-to-end tests run against the bundled model; until then a small
class-conditional MNIST-shaped model is generated. A small unconditional 3-channel model ("tiny") is
always generated for the unconditional-model cases. Weights are perturbed from their init so that
samples depend on every layer.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from model import HParams
from model.checkpoint import save_model_folder
from service import Settings, create_app
from service.http.server import GracefulServer, uvicorn_config
from tests.factories import perturbed

REPO = Path(__file__).resolve().parents[2]
BUNDLED = REPO / "weights" / "mnist"
BUNDLED_EXISTS = (BUNDLED / "model.safetensors").is_file()

# Five latent layers (1, 4, 8, 16, 32): every resolution and mixin path, a few ms per image on a CPU.
SMALL_BLOCKS = dict(
    width=16, enc_blocks="32x1,32d2,16x1,16d2,8x1,8d2,4x1,4d4,1x1", dec_blocks="1x1,4m1,8m4,16m8,32m16"
)

# Settings shared by the test servers: one torch thread (the CI box has 2 cores and may be shared;
# more threads than free cores make torch stall), no access log.
TEST_SETTINGS = dict(cpu_threads=1, access_log=False, log_level="warning")


def write_test_models(root: Path, conditional: bool = True) -> Path:
    """root/mnist (the bundled model, or a small conditional stand-in) and root/tiny (unconditional)."""
    root.mkdir(parents=True, exist_ok=True)
    if conditional:
        if BUNDLED_EXISTS:
            (root / "mnist").symlink_to(BUNDLED, target_is_directory=True)
        else:
            mnist = perturbed(HParams.preset("mnist").replace(**SMALL_BLOCKS), seed=0)
            save_model_folder(
                mnist, root / "mnist", provenance={"source": "tests/service", "weights": "random"}
            )
    tiny = perturbed(HParams.preset("tiny").replace(**SMALL_BLOCKS), seed=1)
    save_model_folder(tiny, root / "tiny", provenance={"source": "tests/service", "weights": "random"})
    return root


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_test_models(tmp_path_factory.mktemp("models"))


# --------------------------------------------------------------------------------------------
# A real uvicorn server in a thread
# --------------------------------------------------------------------------------------------


class RunningServer:
    """The service's server (service.server: our connection limits included) serving
    create_app(settings) on a free loopback port, in a background thread."""

    def __init__(self, settings: Settings) -> None:
        self.app = create_app(settings)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        state = self.app.state.service
        self.server = GracefulServer(uvicorn_config(self.app, settings, state), state)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self, wait_ready: bool = True, timeout_s: float = 120.0) -> RunningServer:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        if wait_ready:
            while httpx.get(self.url + "/health/ready").status_code != 200:
                if time.monotonic() > deadline:
                    raise RuntimeError("the test server did not become ready")
                time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kw)

    def metrics(self) -> str:
        return httpx.get(self.url + "/metrics").text


@contextlib.contextmanager
def running_server(model_dir: Path, wait_ready: bool = True, **overrides) -> Iterator[RunningServer]:
    settings = Settings(model_dir=model_dir, **{**TEST_SETTINGS, **overrides})
    server = RunningServer(settings).start(wait_ready=wait_ready)
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def keyed_server(model_dir: Path, folder: Path, keys: str, **overrides) -> Iterator[RunningServer]:
    """A server without warm-up whose API keys, a line each with its policy, are `keys`: a keys
    file written in `folder`."""
    keys_file = folder / "keys.txt"
    keys_file.write_text(keys)
    with running_server(model_dir, api_keys_file=keys_file, warmup=False, **overrides) as server:
        yield server


@pytest.fixture(scope="session")
def server(model_dir: Path) -> Iterator[RunningServer]:
    """The shared server: default model 'mnist', batches of up to 16 images within 30 ms."""
    with running_server(model_dir, max_batch_size=16, max_batch_delay_ms=30, max_body_bytes=512 * 1024) as s:
        yield s


@pytest.fixture()
def client(server: RunningServer) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


KEY_A = "key-a-0123456789abcdef"
KEY_B = "key-b-fedcba9876543210"


@pytest.fixture(scope="session")
def keyed(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server that needs an API key: KEY_A (api_keys) or KEY_B (from api_keys_file)."""
    keys = f"# one key a line\n\n{KEY_B}\n"
    with keyed_server(model_dir, tmp_path_factory.mktemp("keys"), keys, api_keys=KEY_A) as server:
        yield server


LAYER_DELAY_S = 0.1


@pytest.fixture(scope="session")
def slow(model_dir: Path) -> Iterator[RunningServer]:
    """A server whose model "tiny" is slow: every latent layer takes LAYER_DELAY_S more, so a test
    can leave, or miss a deadline, in the middle of a pass."""
    with running_server(model_dir) as server:
        vae = server.app.state.service.registry.get("tiny").vae
        hooks = [
            b.resnet.register_forward_hook(lambda *_: time.sleep(LAYER_DELAY_S))
            for b in vae.decoder.dec_blocks
        ]
        try:
            yield server
        finally:
            for h in hooks:
                h.remove()


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port free on loopback now (for a server started by a subprocess)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_service(model_dir: Path, *flags: str, **popen: Any) -> tuple[subprocess.Popen, str]:
    """`python -m service` in a subprocess on a free port, once ready: (process, base URL)."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "service",
        "--model-dir",
        str(model_dir),
        "--port",
        str(port),
        "--cpu-threads",
        "1",
    ]
    proc = subprocess.Popen(
        [*popen.pop("prefix", []), *cmd, *flags],
        cwd=popen.pop("cwd", REPO),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **popen,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, proc.communicate()[0]
        try:
            if httpx.get(url + "/health/ready", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the service did not become ready"
        time.sleep(0.1)


def png_bytes(array: np.ndarray, fmt: str = "PNG") -> bytes:
    """uint8 (H, W) or (H, W, C) -> encoded image bytes."""
    img = Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def digit_like(size: int = 32, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A deterministic test image: a bright blob on a dark background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    blob = np.exp(-((yy - size / 2) ** 2 + (xx - size / 2 - 3) ** 2) / (2 * (size / 6) ** 2))
    img = np.clip(255 * blob + rng.normal(0, 10, blob.shape), 0, 255).astype(np.uint8)
    return np.repeat(img[..., None], channels, axis=2)


def post_raw(sock: socket.socket, path: str, body: bytes) -> None:
    """A JSON POST sent on a bare socket, which the test can close mid-request: a client that leaves."""
    head = f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
    sock.sendall(head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels` (0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def run_async(coro):
    return asyncio.run(coro)


@pytest.fixture(scope="session")
def served_mnist(model_dir: Path):
    """The class-conditional test model, loaded on the CPU as the service loads it."""
    from model.checkpoint import load_model
    from service.registry import ServedModel

    torch.set_num_threads(1)
    return ServedModel(name="mnist", vae=load_model(model_dir / "mnist", device="cpu"))
