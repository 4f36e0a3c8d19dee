"""Shared by every test. Under pytest-xdist the workers share the cores, so each test process, and
every process a test starts, computes on one torch thread: more torch threads than free cores make
every pass stall, and a test that compares a run in this process with a run in a subprocess needs
both on the same thread count (floating-point sums depend on it)."""

from __future__ import annotations

import os

import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the processes tests start
    torch.set_num_threads(1)
