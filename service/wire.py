"""The JSON form of float32 tensors (the latents of /encode and /decode): a shape, and the values as
base64 of little-endian float32 in C order. Shared by the service and its client; numpy only.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Sequence

import numpy as np


def tensor_b64(z: np.ndarray) -> str:
    """A float array -> base64 of its little-endian float32 values in C order."""
    return base64.b64encode(np.ascontiguousarray(z, dtype="<f4").tobytes()).decode("ascii")


def tensor_from_b64(data: str, shape: Sequence[int]) -> np.ndarray:
    """base64 float32 values -> a float32 array of `shape`; ValueError saying what is wrong."""
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("data is not valid base64") from None
    expected = 4 * math.prod(shape)
    if len(raw) != expected:
        raise ValueError(f"data holds {len(raw)} bytes; shape {list(shape)} of float32 needs {expected}")
    return np.frombuffer(raw, dtype="<f4").reshape(tuple(shape)).astype(np.float32)
