"""Helpers for the model tests: where the fixtures computed by the official code live, and the device
the parity tests run them on."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

FIXTURES = Path(__file__).parent / "fixtures"

# The parity tests' device: the CPU, or the device VDVAE_TEST_DEVICE names (`vdvae bench gpu` runs
# them on CUDA). Their tolerances are float32's, so CUDA runs them with TF32 off.
TEST_DEVICE = torch.device(os.environ.get("VDVAE_TEST_DEVICE", "cpu"))
if TEST_DEVICE.type == "cuda":
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def on_test_device(value: Any) -> Any:
    """A tensor, or the tensors of nested dicts, lists and tuples, moved to TEST_DEVICE."""
    if isinstance(value, torch.Tensor):
        return value.to(TEST_DEVICE)
    if isinstance(value, dict):
        return {k: on_test_device(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(on_test_device(v) for v in value)
    return value


def pixels_off(a: torch.Tensor, b: torch.Tensor) -> tuple[int, float]:
    """(largest difference in levels, fraction of values that differ)."""
    d = (a.int() - b.int()).abs()
    return d.max().item(), (d > 0).float().mean().item()


def assert_same_image(a: torch.Tensor, b: torch.Tensor) -> None:
    """The same image up to the rounding of kernels chosen for another batch: one level, in at most
    0.1% of the values."""
    worst, frac = pixels_off(a, b)
    assert worst <= 1 and frac <= 1e-3, (worst, frac)
