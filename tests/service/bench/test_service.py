"""The benchmark's closed loop against a real server (briefly), its percentiles and its report."""

from __future__ import annotations

import asyncio
import base64
import io
import math
import os

import httpx
import numpy as np
import pytest
from PIL import Image

from service.bench.endpoints import ENDPOINTS
from service.bench.loadgen import percentile
from service.bench.service import closed_loop, main

from ..conftest import RunningServer


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 90), percentile(values, 99)) == (50, 90, 99)
    assert percentile([3.0], 99) == 3.0 and math.isnan(percentile([], 50))


def test_closed_loop_measures_throughput_latency_and_batches(server: RunningServer) -> None:
    # The test server runs in this process: its CPU per thread is this process's (/proc).
    result = asyncio.run(
        closed_loop(
            server.url, concurrency=4, duration_s=1.0, warmup_s=0.2, payload={"n": 2}, server_pid=os.getpid()
        )
    )
    assert result.requests > 0 and result.errors == {}
    assert result.images == 2 * result.requests
    assert result.rps > 0 and result.percentile_ms(50) <= result.percentile_ms(99)
    assert result.batches >= 1 and result.mean_batch >= 2  # each request alone is 2 images
    assert result.compute_s_per_batch > 0
    assert 0 < result.client_cpu_s_per_request < 1  # the load generator's own CPU per request
    assert 0 <= result.loop_cpu_s_per_request < 1 and 0 < result.compute_cpu_s_per_request < 1


def test_main_prints_a_table_row_per_concurrency(
    server: RunningServer, capsys: pytest.CaptureFixture
) -> None:
    assert main(["--url", server.url, "--concurrency", "1,2", "--duration", "0.5", "--warmup", "0.1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if line.strip().startswith("server")]
    assert len(rows) == 2 and "req/s" in "\n".join(lines)


def test_each_endpoint_that_samples_is_asked_for_the_same_images(server: RunningServer) -> None:
    """The benchmark's request of each endpoint draws what /sample draws for the same seed."""
    spec = {"n": 2, "temperature": 0.9}
    answers = {}
    for name, build in ENDPOINTS.items():
        r = build(spec, "mnist", 11)
        headers = {"Content-Type": r.content_type}
        if r.headers:
            key, value = r.headers.strip().split(": ")
            headers[key] = value
        answer = httpx.post(server.url + r.path, content=r.body, headers=headers, timeout=60)
        assert answer.status_code == 200, (name, answer.text)
        answers[name] = answer
    pngs = [d["b64_json"] for d in answers["sample"].json()["data"]]
    assert [d["b64_json"] for d in answers["openai"].json()["data"]] == pngs
    images = np.stack([np.asarray(Image.open(io.BytesIO(base64.b64decode(b)))) for b in pngs])[..., None]
    json_tensor = answers["v2-json"].json()["outputs"][0]
    assert np.array_equal(np.array(json_tensor["data"], np.uint8).reshape(json_tensor["shape"]), images)
    binary = answers["v2-binary"]
    assert binary.content.endswith(images.tobytes())  # the images' bytes after the JSON header


def test_main_drives_each_endpoint_in_turn(server: RunningServer, capsys: pytest.CaptureFixture) -> None:
    argv = ["--url", server.url, "--endpoints", ",".join(ENDPOINTS), "--concurrency", "1"]
    assert main([*argv, "--duration", "0.5", "--warmup", "0.1"]) == 0
    table = [line.split("[")[0].split() for line in capsys.readouterr().out.splitlines()]  # less the load
    rows = [fields for fields in table if fields and fields[0] in ENDPOINTS]
    assert [r[0] for r in rows] == list(ENDPOINTS)
    assert all(r[-1] == "0" for r in rows)  # the last column: no errors
