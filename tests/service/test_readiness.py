"""Readiness: 503 until every model is loaded and warmed up; broken model folders are reported and
skipped; the default model falls back to the first one when its name is absent."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

import service.app
from model.noise import draw_threads, set_draw_threads
from service.registry import load_registry

from .conftest import running_server, write_test_models


def test_not_ready_until_the_models_are_loaded(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = threading.Event()

    def gated_load(*args, **kwargs):
        assert gate.wait(timeout=60)
        return load_registry(*args, **kwargs)

    monkeypatch.setattr(service.app, "load_registry", gated_load)
    with running_server(model_dir, wait_ready=False) as server, server.client() as client:
        ready = client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["type"] == "/problems/not-ready" and "loading" in ready.json()["detail"]
        assert client.get("/health/live").status_code == 200  # alive while loading
        refused = client.post("/sample", json={"n": 1})
        assert refused.status_code == 503 and refused.headers["retry-after"]
        assert client.get("/metrics").status_code == 200

        gate.set()
        deadline = time.monotonic() + 60
        while client.get("/health/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert client.post("/sample", json={"n": 1}).status_code == 200


def test_broken_model_folder_is_reported_and_the_others_served(tmp_path: Path) -> None:
    root = write_test_models(tmp_path / "models", conditional=False)
    broken = root / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"hparams": {"width": 8}}')
    (broken / "model.safetensors").write_bytes(b"\x00" * 100)
    with running_server(root) as server, server.client() as client:
        health = client.get("/health/ready").json()
        assert health["models"] == ["tiny"]
        assert "broken" in health["model_errors"]
        # No "mnist" here: the default falls back to the only model.
        r = client.post("/sample", json={"n": 1})
        assert r.status_code == 200 and r.json()["model"] == "tiny"


def test_no_loadable_model_never_turns_ready(tmp_path: Path) -> None:
    broken = tmp_path / "models" / "broken"
    broken.mkdir(parents=True)
    (broken / "config.json").write_text("not json")
    with running_server(tmp_path / "models", wait_ready=False) as server:
        server.thread.join(timeout=60)  # the server stops by itself: `python -m service` exits 1
        assert not server.thread.is_alive() and server.server.startup_failed
        problem = server.app.state.service.problem
        assert "startup failed" in problem and "not valid JSON" in problem
        assert str(tmp_path) not in problem  # no absolute path (it would show on /health/ready)


def test_serves_without_warmup(model_dir: Path) -> None:
    with running_server(model_dir, warmup=False) as server, server.client() as client:
        r = client.post("/sample", json={"n": 2, "seed": 0, "model": "tiny"}, headers={"Accept": "image/png"})
        assert r.status_code == 200 and r.headers["x-seeds"] == "0,1"
        assert np.frombuffer(r.content[:8], np.uint8).tolist() == [137, 80, 78, 71, 13, 10, 26, 10]


def test_a_drain_that_began_during_startup_is_never_undone() -> None:
    from service.metrics import Metrics
    from service.settings import Settings
    from service.state import Phase, ServiceState

    state = ServiceState(settings=Settings(), metrics=Metrics(8))
    state.start_draining()
    state.set_phase(Phase.READY)
    assert state.phase is Phase.DRAINING
    assert "vae_ready 0.0" in state.metrics.render().decode()


def test_the_gpu_settings_start_on_a_cpu_and_the_draw_threads_are_set(model_dir: Path) -> None:
    try:
        with running_server(model_dir, cuda_graphs=True, draw_threads=2) as server, server.client() as client:
            assert draw_threads() == 2
            assert client.post("/sample", json={"n": 3, "seed": 1}).status_code == 200
            registry = server.app.state.service.registry
            assert all(m.vae.graphs is None for m in registry.models.values())  # CUDA graphs: CUDA only
    finally:
        set_draw_threads(1)
