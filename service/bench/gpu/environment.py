"""The machine the figures come from, and its two ceilings, measured rather than taken from a data
sheet: the dense matrix rate (bf16 on CUDA, float32 on the CPU of a dry run) and the memory bandwidth
(a large copy, bytes read plus bytes written)."""

from __future__ import annotations

import importlib.util
import os
import platform
import subprocess
import time
from typing import Any

import torch

from .command import REPO, Run

# What the service, the tests and the digits import (beside torch): a name missing here explains
# the stages that fail for it.
IMPORTS = (
    "fastapi", "starlette", "pydantic", "pydantic_settings", "uvicorn", "httptools", "multipart",
    "prometheus_client", "safetensors", "httpx", "tqdm", "uvloop", "numpy", "PIL", "pytest", "mlxtend",
)  # fmt: skip


def run(run: Run) -> dict[str, Any]:
    env = describe(run.device)
    env["ceilings"] = ceilings(run.device)
    run.shared["matrix_flops"] = env["ceilings"]["matrix_tflops"] * 1e12
    for key, value in env.items():
        print(f"{key}: {value}")
    return env


def describe(device: torch.device) -> dict[str, Any]:
    env: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "commit": commit(),
        "missing_packages": [name for name in IMPORTS if importlib.util.find_spec(name) is None],
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(
            capability=f"{props.major}.{props.minor}",
            memory_gib=round(props.total_memory / 2**30, 1),
            multiprocessors=props.multi_processor_count,
            driver=driver_version(),
            # The float32 figures run under torch's defaults: TF32 in cuDNN's convolutions, not in matmul.
            tf32={"cudnn": torch.backends.cudnn.allow_tf32, "matmul": torch.backends.cuda.matmul.allow_tf32},
        )
    return env


def commit() -> str:
    """The checkout's commit (git describe, `-dirty` when the tree has changes), or the one written
    to .cache/commit beside a tree that travelled without its .git."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=REPO, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        if out.returncode == 0:
            return out.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    saved = REPO / ".cache" / "commit"
    return f"{saved.read_text().strip()} (.cache/commit)" if saved.is_file() else "unknown"


def driver_version() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def _seconds(call: Any, device: torch.device, repeats: int) -> float:
    """Median seconds of `call` after three warm-up calls."""
    for _ in range(3):
        call()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        call()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def ceilings(device: torch.device) -> dict[str, Any]:
    """The matrix rate (TFLOP/s) of a large square product and the bandwidth (GB/s) of a large copy."""
    on_cuda = device.type == "cuda"
    size, dtype = (8192, torch.bfloat16) if on_cuda else (512, torch.float32)
    g = torch.Generator(device).manual_seed(0)
    a = torch.randn(size, size, device=device, dtype=dtype, generator=g)  # random data: zeros run faster
    b = torch.randn(size, size, device=device, dtype=dtype, generator=g)
    matrix = 2 * size**3 / _seconds(lambda: a @ b, device, 10)
    x = torch.randn((2**29 if on_cuda else 2**24) // 4, device=device, generator=g)  # 2 GiB, 16 MiB
    y = torch.empty_like(x)
    copy = 2 * x.numel() * 4 / _seconds(lambda: y.copy_(x), device, 10)
    return {
        "matrix_tflops": round(matrix / 1e12, 3),
        "matrix": f"{size}x{size}x{size} {str(dtype).removeprefix('torch.')} product",
        "copy_gb_s": round(copy / 1e9, 1),
    }
