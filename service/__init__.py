"""HTTP inference service for Very Deep VAEs: batched sampling, reconstruction, encoding, decoding.

Start it with `vdvae serve` (or `python -m service`); build an app in code with
`create_app(Settings(...))`. A request goes: http/ (connections, middleware, access) -> api/<family>/
routes.py (the endpoint) -> inputs/ (parsing, payloads, validation: per-image items) ->
batching/ (scheduler, batcher, engine, operations) -> the model -> api/answers.py; errors.py turns
any failure into its problem answer. The command (cli/), the client (client/) and the benchmarks
(bench/) sit beside the server, which imports none of them.
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
