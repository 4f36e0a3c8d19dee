"""`--local FOLDER`: the service itself, run in this process, answering an AsyncClient in memory.

The app is the one `vdvae serve` runs (create_app with the same Settings, VDVAE_* variables
included), started through its own lifespan and reached over httpx's ASGI transport: validation,
the model's defaults, batching, the operations and the PNG encoding are the service's own code, so
a local run gives the bytes a remote one gives for the same seeds and parameters. Only the model
folder (or folder of model folders) and a few start-up settings differ: no warm-up pass (one
command, one use), no access log. Imports torch; the remote commands never import this module.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from pydantic import ValidationError

from model.checkpoint import CONFIG_FILE, model_folders

from ..app import create_app
from ..client import AsyncClient
from ..settings import Settings
from ..state import Phase, ServiceState
from .options import UsageError

LOCAL_URL = "http://local"


class LocalServiceError(UsageError):
    """The local service could not start: no model folder there, or none could be loaded."""


def served_folders(path: Path, scratch: Path) -> tuple[Path, str | None]:
    """(model_dir, default model) serving `path`: one model folder (linked alone into `scratch`,
    so its siblings are not loaded), or a folder of model folders as it is."""
    if (path / CONFIG_FILE).is_file():
        (scratch / path.name).symlink_to(path.resolve(), target_is_directory=True)
        return scratch, path.name
    if model_folders(path):
        return path, None
    raise LocalServiceError(
        f"--local {path}: no model folder there (expected {path}/config.json and model.safetensors, "
        f"or {path}/<name>/config.json)"
    )


async def wait_until_started(state: ServiceState) -> None:
    """Return once the app's models are loaded; LocalServiceError when none could be."""
    await state.started.wait()
    if state.phase is Phase.FAILED:
        raise LocalServiceError(state.problem)


@contextlib.asynccontextmanager
async def local_client(path: str | Path, **client_options: object) -> AsyncIterator[AsyncClient]:
    """An AsyncClient of the service running in this process on the model folder(s) at `path`."""
    path = Path(path)
    if not path.is_dir():
        raise LocalServiceError(f"--local {path}: not a folder")
    with tempfile.TemporaryDirectory(prefix="vdvae-local-") as scratch:
        model_dir, default = served_folders(path, Path(scratch))
        overrides = {"model_dir": model_dir, "warmup": False, "access_log": False}
        if default is not None:
            overrides["default_model"] = default
        try:
            settings = Settings(**overrides)
        except ValidationError as e:
            raise LocalServiceError(f"the VDVAE_* settings are invalid: {e}") from None
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            await wait_until_started(app.state.service)
            transport = httpx.ASGITransport(app=app)
            async with AsyncClient(LOCAL_URL, transport=transport, **client_options) as client:
                yield client
