"""The weights' moving average: its warm-up, and the note a short fixed-rate run prints."""

from __future__ import annotations

import torch

from model.training.ema import ema_rate, short_run_warning
from model.training.train import main

from .test_train import SMALL, state


def test_the_warm_up_rate_starts_low_and_reaches_the_fixed_rate() -> None:
    assert ema_rate(0.999, 0, warmup=True) == 0.1
    assert ema_rate(0.999, 90, warmup=True) == 91 / 100
    assert ema_rate(0.999, 8991, warmup=True) == 0.999  # (10r - 1) / (1 - r)
    assert ema_rate(0.999, 0, warmup=False) == 0.999


def test_a_short_fixed_rate_run_is_told_how_much_initial_weight_it_exports() -> None:
    note = short_run_warning(0.999, 1500, warmup=False)
    assert note is not None and "22%" in note and "--ema-warmup" in note
    assert short_run_warning(0.999, 1500, warmup=True) is None
    assert short_run_warning(0.999, 12000, warmup=False) is None  # 0.999**12000: 6e-6


def distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return sum(float((a[k].float() - b[k].float()).norm()) for k in a if a[k].is_floating_point())


def test_with_the_warm_up_a_short_run_exports_its_trained_weights(tmp_path, capsys) -> None:
    args = [*SMALL, "--steps", "20", "--lr", "3e-3"]
    assert main([*args, "--out", str(tmp_path / "fixed")]) == 0
    assert "holds 98% of the initial random weights" in capsys.readouterr().err
    assert main([*args, "--ema-warmup", "--out", str(tmp_path / "warm")]) == 0
    assert "initial random weights" not in capsys.readouterr().err
    fixed, warm = state(tmp_path / "fixed"), state(tmp_path / "warm")
    # Same seed, same updates: the trained weights are the same; only their averages differ.
    assert distance(fixed["model"], warm["model"]) == 0
    # The fixed rate's average is 98% the initial weights, far from the trained ones; the warmed-up
    # one follows them.
    assert distance(warm["ema"], warm["model"]) < 0.2 * distance(fixed["ema"], fixed["model"])
