"""HTTP inference service for Very Deep VAEs: batched sampling, reconstruction, encoding, decoding.

Start it with `python -m service` (or `vdvae-serve`); build an app in code with `create_app(Settings(...))`.
A request goes: routes.py -> validation.py -> batcher.py -> engine.py -> operations.py -> model.
"""

__version__ = "0.1.0"

from .app import create_app
from .settings import Settings

__all__ = ["Settings", "__version__", "create_app"]
