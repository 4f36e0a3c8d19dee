"""`python -m service` (or `vdvae serve`): read the settings, then serve (http/server.py: uvicorn
with our connection limits, and the SIGTERM drain)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from model.checkpoint import model_folders

from .app import create_app
from .http.access import KeyFileError
from .http.server import GracefulServer, uvicorn_config
from .runtime import RuntimeDirError, prepare_runtime_dirs
from .settings import Settings, log_settings, settings_from_cli

log = logging.getLogger("service")


def serve(settings: Settings) -> int:
    """Run the service until it is stopped; the process exit code."""
    if not model_folders(settings.model_dir):
        log.error(
            "no model folders under %s (expected %s/<name>/config.json and model.safetensors); "
            "pass --model-dir or set VDVAE_MODEL_DIR",
            settings.model_dir.resolve(), settings.model_dir,
        )  # fmt: skip
        return 2
    try:
        prepare_runtime_dirs(settings)
        app = create_app(settings)
    except (KeyFileError, RuntimeDirError) as e:
        log.error("%s", e)
        return 2
    state = app.state.service
    server = GracefulServer(uvicorn_config(app, settings, state), state)
    server.run()
    if server.startup_failed:
        log.error("exiting: %s", state.problem)
        return 1
    return 0


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> NoReturn:
    """Serve, then end the process at once: everything is answered, stopped and logged by then, and
    the interpreter's own teardown (torch and every module) takes seconds more, time a stop's grace
    period would otherwise spend on nothing."""
    settings = settings_from_cli(argv, prog)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    log_settings(settings, log)
    code = serve(settings)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
