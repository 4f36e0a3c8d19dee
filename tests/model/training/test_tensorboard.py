"""`--tensorboard`: the run's curves and sample grids in TensorBoard's event files (read back with
TensorBoard's own reader), continued without duplicates on resume; a clear error without the extra."""

from __future__ import annotations

import sys

import pytest

from model.training.train import main

from .test_train import SMALL, rows

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def events(run) -> event_accumulator.EventAccumulator:
    acc = event_accumulator.EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    return acc.Reload()


def test_training_curves_and_sample_grids_reach_tensorboard(tmp_path) -> None:
    run = tmp_path / "run"
    args = [*SMALL, "--eval-every", "3", "--sample-every", "3", "--tensorboard", "--out", str(run)]
    assert main([*args, "--steps", "3"]) == 0
    assert main([*args, "--steps", "5", "--resume"]) == 0
    acc = events(run)
    scalars = set(acc.Tags()["scalars"])
    for tag in (
        "train/loss",
        "train/bpd",
        "train/grad_norm",
        "train/lr",
        "train/skipped_total",
        "eval/test_bpd",
    ):
        assert tag in scalars, tag
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2, 3, 4, 5]  # once each, across the resume
    logged = rows(run, "train")  # the JSONL log's rows: the same figures
    for field in ("loss", "bpd", "lr", "skipped_total"):
        values = [e.value for e in acc.Scalars(f"train/{field}")]
        assert values == pytest.approx([r[field] for r in logged], rel=1e-6), field
    assert {e.step for e in acc.Scalars("eval/test_bpd")} == {3, 5}
    images = set(acc.Tags()["images"])
    assert {"samples/temperatures", "samples/classes", "samples/classes-guided"} <= images
    grid = acc.Images("samples/temperatures")[0]
    assert grid.step == 3 and grid.width > grid.height > 32  # a grid of 10 columns and 5 rows


def test_without_the_tensorboard_package_the_run_stops_with_the_fix(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    assert main([*SMALL, "--steps", "1", "--tensorboard", "--out", str(tmp_path / "run")]) == 2
    assert "pip install 'vdvae-serve[tensorboard]'" in capsys.readouterr().err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
