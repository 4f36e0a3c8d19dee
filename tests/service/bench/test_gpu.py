"""`vdvae bench gpu`: its CPU dry run runs every stage and writes every file (the reference
implementations' code too, given checkouts: $VDVAE_OFFICIAL_CHECKOUT, $VISUAL_VAE_CHECKOUT), its help
says how to run it on a device, and its tests stage lists every CUDA test."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model.imageio import png_array
from service.bench.gpu.checks import CUDA_TESTS, PARITY_TESTS
from service.bench.gpu.command import DRY_RUN, REPO, main, requirements
from service.bench.gpu.report import FILES

CHECKOUTS = {"--official": "VDVAE_OFFICIAL_CHECKOUT", "--visual-vae": "VISUAL_VAE_CHECKOUT"}


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gpu-dry-run")
    argv = ["--dry-run", "--out", str(out)]
    for flag, variable in CHECKOUTS.items():
        if os.environ.get(variable):
            argv += [flag, os.environ[variable]]
    assert main(argv) == 0
    return out


def test_the_dry_run_runs_every_stage_and_writes_every_file(dry_run: Path) -> None:
    assert sorted(p.name for p in dry_run.iterdir()) == sorted(FILES)
    doc = json.loads((dry_run / "results.json").read_text())
    stages = doc["stages"]
    assert list(stages) == ["environment", "tests", "precision", "service", "sampling", "profile"]
    assert {name: s["status"] for name, s in stages.items()} == dict.fromkeys(stages, "ok")
    assert stages["environment"]["ceilings"]["matrix_tflops"] > 0


def test_the_dry_run_says_which_figures_need_a_gpu(dry_run: Path) -> None:
    summary = (dry_run / "summary.md").read_text()
    assert "A dry run on the CPU" in summary and "No figure below is a GPU figure" in summary
    targets = json.loads((dry_run / "results.json").read_text())["targets"]
    assert [t["target"] for t in targets] == [
        "sampling speed",
        "batch-1 latency",
        "arithmetic floor",
        "service",
    ]
    assert all(t["met"] is None for t in targets)
    assert summary.count("needs a GPU") >= len(targets)


def test_the_tests_stage_ran_the_parity_tests_and_skipped_the_cuda_ones(dry_run: Path) -> None:
    tests = json.loads((dry_run / "results.json").read_text())["stages"]["tests"]
    assert tests["exit_code"] == 0 and tests["failed"] == [] and tests["passed"] >= 2
    assert tests["skipped"].get("needs a CUDA GPU", 0) >= 3


def test_the_figures_of_each_stage_are_there(dry_run: Path) -> None:
    stages = json.loads((dry_run / "results.json").read_text())["stages"]
    precision = stages["precision"]
    assert set(precision["mnist"]) == {"fp32", "bf16", "fp16"}
    assert all(v == 0 for f in precision["mnist"].values() for v in f["nonfinite_at_extremes"].values())
    assert len(precision["mnist"]["fp32"]["nonfinite_at_extremes"]) == 8  # 2 temperatures x 4 guidance
    picture = png_array((dry_run / "precision.png").read_bytes())
    assert picture.shape[0] == 2 * 3 * (32 + 2) + 2  # a row per model and dtype
    rows = stages["sampling"]["rows"]
    measured = {(r["model"], r["code"], r["form"]) for r in rows if r.get("img_s", 0) > 0}
    assert {("tiny", "ours", f) for f in ("fp32", "bf16", "bf16+graphs")} <= measured
    assert ("mnist", "ours", "fp32") in measured
    assert stages["sampling"]["models"]["tiny"]["gflop_per_sample"] > 0
    if os.environ.get(CHECKOUTS["--official"]):
        assert ("tiny", "openai/vdvae", "fp32") in measured
    if os.environ.get(CHECKOUTS["--visual-vae"]):
        assert any(code == "visual-vae" for _, code, _ in measured)
    servers = stages["service"]["servers"]
    assert set(servers) == {f"max_batch_size={DRY_RUN.service_batch}", "max_batch_size=1"}
    for server in servers.values():
        assert server["startup_s"] > 0
        assert [r["concurrency"] for r in server["runs"]] == list(DRY_RUN.concurrency)
        assert all(r["ips"] > 0 and r["of_model"] > 0 for r in server["runs"])
    assert stages["profile"]["top"] and (dry_run / "profile.txt").read_text().strip()


def test_help_says_how_to_run_it_on_a_device() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "service.cli", "bench", "gpu", "--help"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "PYTHONPATH=/tmp/site:. python3 -m service.cli bench gpu --out" in out
    assert "docs/gpu-benchmark.md" in out and "--dry-run" in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_a_gpu_only_the_dry_run_runs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--out", str(tmp_path)]) == 2
    assert "torch sees no CUDA GPU; --dry-run" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_the_wheels_are_pinned_to_the_installed_versions() -> None:
    lines = requirements()
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][^=\s]*", line) for line in lines)
    assert any(line.startswith("fastapi==") for line in lines)


def test_the_tests_stage_lists_every_file_with_cuda_tests() -> None:
    marked = {
        str(p.relative_to(REPO))
        for p in (REPO / "tests").rglob("*.py")
        if re.search(r"^from tests\.marks import", p.read_text(), re.MULTILINE)
    }
    assert marked == set(CUDA_TESTS)
    assert all("pytestmark = pytest.mark.parity" in (REPO / p).read_text() for p in PARITY_TESTS)
