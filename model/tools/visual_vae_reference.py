"""visual-vae's own PyTorch code (tcl9876/visual-vae), imported from a checkout the caller names, so
that a benchmark or a fixture maker can run it beside model.visual_vae on the same weights.

Nothing of theirs is copied here: `load_reference(checkout)` puts the checkout on the import path and
imports `visual_vae.torch.model`. Their model modules import helpers that sampling never calls
(TensorFlow's gfile for checkpoint paths, torchvision's make_grid and matplotlib for figures); when
one of those packages is missing, an empty stand-in module takes its place so that the model code
imports, and calling anything of the stand-in raises.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

# Packages their torch code imports at the top for things sampling never does, with the submodules
# it imports from them.
_UNUSED_IMPORTS = {"tensorflow": ("io",), "torchvision": ("utils",), "matplotlib": ("pyplot",)}


class ReferenceError(RuntimeError):
    """Their code could not be imported from the named checkout."""


def _stand_in(name: str) -> ModuleType:
    module = ModuleType(name)

    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"{name} is not installed: visual-vae's helpers that need it are unavailable")

    module.__getattr__ = lambda attr: unavailable  # type: ignore[method-assign]
    return module


def load_reference(checkout: str | Path) -> ModuleType:
    """Their `visual_vae.torch.model` module from a checkout of tcl9876/visual-vae."""
    root = Path(checkout).resolve()
    if not (root / "visual_vae" / "torch" / "model.py").is_file():
        raise ReferenceError(f"{root} is not a checkout of tcl9876/visual-vae (no visual_vae/torch/model.py)")
    for package, submodules in _UNUSED_IMPORTS.items():
        if package in sys.modules or importlib.util.find_spec(package) is not None:
            continue
        sys.modules[package] = parent = _stand_in(package)
        for sub in submodules:
            sys.modules[f"{package}.{sub}"] = child = _stand_in(f"{package}.{sub}")
            setattr(parent, sub, child)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        module = importlib.import_module("visual_vae.torch.model")
    except ImportError as e:
        raise ReferenceError(f"cannot import visual-vae's torch model from {root}: {e}") from None
    if not str(Path(module.__file__).resolve()).startswith(str(root)):
        raise ReferenceError(f"visual_vae was already imported from {module.__file__}, not {root}")
    return module


@contextmanager
def replayed_normals(draws: list[torch.Tensor]) -> Iterator[None]:
    """Within the block, torch.randn / torch.randn_like return the given tensors in order (checked
    against the shape asked for), so their code draws exactly what the caller decided."""
    queue = list(draws)
    randn, randn_like = torch.randn, torch.randn_like

    def shape_of(args: tuple) -> tuple[int, ...]:
        return tuple(args[0]) if len(args) == 1 and isinstance(args[0], list | tuple | torch.Size) else args

    def next_draw(shape: tuple[int, ...]) -> torch.Tensor:
        if not queue:
            raise RuntimeError(f"their code asked for more normal draws than given (shape {shape})")
        t = queue.pop(0)
        if tuple(t.shape) != tuple(shape):
            raise RuntimeError(
                f"their code asked for a draw of shape {tuple(shape)}, the next given is {tuple(t.shape)}"
            )
        return t.clone()

    torch.randn = lambda *shape, **kw: next_draw(shape_of(shape))  # type: ignore[assignment]
    torch.randn_like = lambda t, **kw: next_draw(tuple(t.shape))  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.randn, torch.randn_like = randn, randn_like
    if queue:
        raise RuntimeError(f"{len(queue)} given normal draws were not used")
