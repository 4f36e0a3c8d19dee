"""model.inference's allocator setting: a model sampled on a worker thread reuses its activations'
memory from pass to pass instead of faulting it in again (the service's engine is such a thread)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Run in a fresh process: the setting is process-wide, and threads keep the arena they started with.
WORKER_PASSES = """
import json, resource, sys, torch
from concurrent.futures import ThreadPoolExecutor
from model.checkpoint import load_model
from model.inference import keep_freed_memory_in_heap
torch.set_num_threads(1)
if sys.argv[1] == "on":
    keep_freed_memory_in_heap()
worker = ThreadPoolExecutor(1)  # started after the setting, as the service's engine thread is
def passes():
    vae = load_model("weights/mnist", device="cpu")
    for i in range(3):
        vae.sample(16, seeds=100 * i)
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    for i in range(4):
        vae.sample(16, seeds=16 * i)
    return (resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before) / 4
print(json.dumps(worker.submit(passes).result()))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator; faults from getrusage")
def test_a_worker_thread_reuses_its_activation_memory_between_passes():
    def faults_per_pass(setting: str) -> float:
        cmd = [sys.executable, "-c", WORKER_PASSES, setting]
        out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, check=True)
        return json.loads(out.stdout)

    off, on = faults_per_pass("off"), faults_per_pass("on")
    # Without it, the thread's own arena unmaps its heaps after every pass (about 10,000 page
    # faults per batch of 16 here); with it, a pass mostly takes memory already mapped (0-640).
    assert off > 2000, off
    assert on < off / 5, (on, off)
