"""Marks shared by the test packages.

A test that needs a CUDA GPU is marked `cuda` and skipped without one; `vdvae bench gpu` runs them
on a device (pytest -m cuda over the files its tests stage lists: service/bench/gpu/checks.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pytest
import torch

T = TypeVar("T", bound=Callable)

CUDA_MARKS = (
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
)


def cuda_only(test: T) -> T:
    """Mark a test function as needing a CUDA GPU."""
    for mark in CUDA_MARKS:
        test = mark(test)
    return test
