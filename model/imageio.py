"""Images in and out of numpy: PNG encoding, grids of uint8 NHWC batches (no torchvision), and
the channel counts of Pillow's modes."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .files import atomic_write_bytes

# Channels of the common Pillow modes (P is a palette of indices: one channel until expanded).
MODE_CHANNELS = {
    "1": 1,
    "L": 1,
    "P": 1,
    "I": 1,
    "F": 1,
    "I;16": 1,
    "LA": 2,
    "RGB": 3,
    "YCbCr": 3,
    "RGBA": 4,
    "CMYK": 4,
}


def image_grid(images: torch.Tensor | np.ndarray, ncols: int | None = None, pad: int = 2) -> np.ndarray:
    """(n, H, W, C) uint8 -> one (rows*(H+pad)+pad, cols*(W+pad)+pad, C) uint8 image, row-major."""
    images = images.cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    n, h, w, c = images.shape
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    grid = np.zeros((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), dtype=np.uint8)
    for i, im in enumerate(images):
        r, col = divmod(i, ncols)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        grid[y : y + h, x : x + w] = im
    return grid


def to_pil(image: np.ndarray | torch.Tensor) -> Image.Image:
    """(H, W, C) uint8 with C = 1 or 3 -> a Pillow image (L or RGB)."""
    arr = image.cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    return Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr, "L" if arr.shape[-1] == 1 else "RGB")


def png_bytes(image: np.ndarray | torch.Tensor, compress_level: int = 6) -> bytes:
    """(H, W, C) uint8 -> PNG bytes at zlib `compress_level` (6, Pillow's default; the service
    uses 1, the cheapest, since it encodes on every request)."""
    buf = io.BytesIO()
    to_pil(image).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def save_png(image: np.ndarray | torch.Tensor, path: str | Path) -> None:
    atomic_write_bytes(path, png_bytes(image))
