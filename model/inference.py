"""The inference form of a model: its device, memory format, mixed precision and compilation.

The top-down loop itself needs no tuning here: it never synchronises with the host inside the
layer loop (per-image choices are decided on the CPU before the loop, random draws are made up
front), and user-level calls already run under inference_mode.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from .graphs import SampleGraphs, power_of_two_buckets
from .hierarchical import HierarchicalVAE

# Autocast dtypes by name, for inference (here) and for training (model.training).
AMP_DTYPES: dict[str, torch.dtype | None] = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(spec: str | torch.device | None = None) -> torch.device:
    """None or "auto": the GPU when torch sees one, else the CPU; otherwise the named device.
    Asking for CUDA on a machine without it is an error, not a silent fallback."""
    if spec is None or spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {str(spec)!r} asked for, but torch sees no CUDA GPU")
    return device


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (its malloc tunables are what the two functions below use)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def keep_freed_memory_in_heap() -> bool:
    """Stop glibc from returning large freed blocks to the OS (Linux only; process-wide).

    PyTorch's CPU allocator has no cache, so each new activation of a few MB is mmap'ed and
    zero-filled by the kernel on first touch. Raising glibc's mmap and trim thresholds lets freed
    blocks be reused instead: sampling a batch of 32 digits took 35% less CPU time. Returns whether
    the setting took effect. The price: freed memory stays with the process until
    release_freed_memory() is called.

    It also puts every thread started afterwards on the main arena (M_ARENA_MAX 1). A thread's own
    arena unmaps its extra heaps as soon as they are empty, whatever the thresholds: the service's
    engine thread faulted its activations in again on every pass (850 page faults per image, 25%
    more CPU per image than the same sampling on the main thread). Call this before starting the
    threads that run the model: a thread keeps the arena it was given when it started.
    """
    libc = _glibc()
    if libc is None:
        return False
    m_trim_threshold, m_mmap_threshold, m_arena_max = -1, -3, -8  # from <malloc.h>
    limit = 1 << 30
    return all(
        libc.mallopt(option, value)
        for option, value in ((m_mmap_threshold, limit), (m_trim_threshold, limit), (m_arena_max, 1))
    )


def release_freed_memory() -> bool:
    """Return the heap's free memory to the OS (glibc malloc_trim; a few ms, takes the allocator's
    locks). For a process that just freed much more than its model passes reuse, e.g. after a burst
    of large request bodies; the next pass maps its activations again once. Returns whether it ran."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def optimize_for_inference(
    vae: HierarchicalVAE,
    *,
    channels_last: bool = True,
    amp: str = "bf16",
    compile: bool = False,
    cuda_graphs: bool = False,
    buckets: Sequence[int] = (),
) -> HierarchicalVAE:
    """Prepare `vae` (in place) for fast sampling and return it.

    channels_last: NHWC activations for the convolutions (default on, on every device: oneDNN on
      CPU and cuDNN on CUDA both run NHWC convolutions without layout conversions).
    amp: autocast dtype on CUDA ("bf16", "fp16" or "none"); ignored on CPU. The latent
      arithmetic (means, std, guidance, KL), the output layer's likelihoods and its sampling stay
      in float32 either way.
    compile: torch.compile every residual block (one graph per block shape, reused across
      blocks of the same shape); the first call of each batch size then pays a compile.
    cuda_graphs: replay prior sampling from CUDA graphs, one per batch bucket (`buckets`, default
      powers of two up to 64), each captured on its first use (model.graphs); ignored on CPU.
    """
    vae.eval().requires_grad_(False)
    on_cuda = vae.device.type == "cuda"
    if not on_cuda:
        keep_freed_memory_in_heap()
    if channels_last:
        vae.to(memory_format=torch.channels_last)
    if amp not in AMP_DTYPES:
        raise ValueError(f"amp must be one of {sorted(AMP_DTYPES)}, got {amp!r}")
    vae.amp_dtype = AMP_DTYPES[amp] if on_cuda else None
    if compile:
        # One graph per distinct block shape (and batch size) replaces dynamo's default of 8
        # recompilations per function before it falls back to eager.
        blocks = list(vae.residual_blocks())
        limit = 64 * len({type(b) for b in blocks}) * len(set(vae.hp.layer_resolutions))
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, limit)
        torch._dynamo.config.accumulated_recompile_limit = max(
            torch._dynamo.config.accumulated_recompile_limit, 4 * limit
        )
        for module in blocks:
            module.compile()
    vae.graphs = None
    if cuda_graphs and on_cuda:
        vae.graphs = SampleGraphs(vae, buckets or power_of_two_buckets(64))
    return vae


@dataclass(frozen=True)
class InferenceForm:
    """optimize_for_inference's settings, for callers that hand them on (the service's registry)."""

    channels_last: bool = True
    amp: str = "bf16"
    compile: bool = False
    cuda_graphs: bool = False
    buckets: tuple[int, ...] = ()

    def apply(self, vae: HierarchicalVAE) -> HierarchicalVAE:
        return optimize_for_inference(vae, **asdict(self))
