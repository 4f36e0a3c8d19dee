"""The tests stage: the CUDA-only tests (marked `cuda`, skipped on a machine without a GPU) and the
parity tests against the reference implementations' tensors (marked `parity`), on the run's device
(VDVAE_TEST_DEVICE; float32, TF32 off), in a pytest process of their own."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from .command import REPO, Run

# The test files holding `cuda` tests (tests/marks.py; a test of this package keeps the list whole)
# and the parity tests. Named one by one: collecting the whole suite would import what the other
# tests need (a browser driver, Kubernetes schemas), which a device machine does not have.
CUDA_TESTS = (
    "tests/model/test_graphs.py",
    "tests/model/test_progressive.py",
    "tests/service/batching/test_engine.py",
)
PARITY_TESTS = ("tests/model/test_parity.py", "tests/model/visual_vae/test_parity.py")
TIMEOUT_S = 180.0  # what they take on a GPU is under a minute: a hung test must not take the run


def run(run: Run) -> dict[str, Any]:
    if not (REPO / "tests").is_dir():
        return {"status": "skipped", "note": "no tests folder: not a checkout"}
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda or parity",
               f"--junitxml={junit}", *CUDA_TESTS, *PARITY_TESTS]  # fmt: skip
        if run.plan.test_filter:
            cmd += ["-k", run.plan.test_filter]
        env = {**os.environ, "VDVAE_TEST_DEVICE": run.device.type, "PYTHONUNBUFFERED": "1"}
        print("$", " ".join(cmd), flush=True)
        out: dict[str, Any] = {"device": run.device.type, "command": " ".join(cmd[1:])}
        try:
            done = subprocess.run(
                cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=min(TIMEOUT_S, run.left())
            )
        except subprocess.TimeoutExpired as e:
            print(e.stdout or "", e.stderr or "", flush=True)
            return {**out, "status": "failed", "error": f"pytest still ran after {e.timeout:.0f} s; stopped"}
        print(done.stdout + done.stderr, flush=True)
        counts = junit_counts(junit) if junit.is_file() else {}
    return {**out, "exit_code": done.returncode, **counts}


def junit_counts(path: Path) -> dict[str, Any]:
    """Passed, failed, skipped (with the reasons) and the failing tests' ids, from pytest's JUnit XML."""
    cases = ET.parse(path).getroot().iter("testcase")
    out: dict[str, Any] = {"passed": 0, "failed": [], "skipped": {}}
    for case in cases:
        name = f"{case.get('classname')}::{case.get('name')}"
        failure = case.find("failure")
        if failure is None:
            failure = case.find("error")
        skipped = case.find("skipped")
        if failure is not None:
            out["failed"].append(name)
        elif skipped is not None:
            reason = skipped.get("message", "")
            out["skipped"][reason] = out["skipped"].get(reason, 0) + 1
        else:
            out["passed"] += 1
    return out
