"""PNG encoding and image grids for uint8 NHWC batches (no torchvision)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .checkpoint import atomic_write


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


def png_bytes(image: np.ndarray | torch.Tensor) -> bytes:
    buf = io.BytesIO()
    to_pil(image).save(buf, format="PNG")
    return buf.getvalue()


def save_png(image: np.ndarray | torch.Tensor, path: str | Path) -> None:
    data = png_bytes(image)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
