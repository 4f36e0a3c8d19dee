"""Fixtures of the training tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_thread():
    """In-process runs on one torch thread, as the subprocesses of the bulk-job tests run (the CI
    box has 2 cores, and more threads than free cores stall torch)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
