"""HTTP inference service for Very Deep VAEs: batched sampling, reconstruction, encoding, decoding.

Start it with `python -m service` (or `vdvae-serve`); build an app in code with `create_app(Settings(...))`.
A request goes: connections.py -> middleware.py, access.py -> routes.py -> parsing.py (bodies.py,
validation.py -> items.py) -> batcher.py -> engine.py -> operations.py -> model; errors.py turns any
failure into its problem answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Settings", "__version__", "create_app"]

if TYPE_CHECKING:
    from .app import create_app
    from .settings import Settings


def __getattr__(name: str) -> Any:
    # Lazy, so that light entry points (service.healthcheck) do not import torch.
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "Settings":
        from .settings import Settings

        return Settings
    raise AttributeError(f"module 'service' has no attribute {name!r}")
