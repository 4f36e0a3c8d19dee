"""Where the bundled weights are: the digit model served by default (`mnist/`) and the judge of its
sample quality (`judges/mnist.safetensors`).

A checkout, and an editable install of it, has them in its `weights/` folder. A built wheel carries
the same folder inside this package as `model/weights/` (pyproject.toml maps it there), so an
installed copy finds its model from any working directory.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def bundled_weights() -> Path:
    """The folder of the bundled model folders: the installed copy, else the checkout's weights/."""
    installed = _PACKAGE / "weights"
    return installed if installed.is_dir() else _PACKAGE.parent / "weights"
