"""`python -m service` (or `vdvae-serve`): read the settings, then serve with uvicorn.

Shutdown on SIGTERM (or Ctrl+C): readiness turns 503 and new model requests get 503 while the
socket stays open; once nothing is queued or computing (or after shutdown_timeout_s) uvicorn's
graceful shutdown finishes the open responses, the lifespan drains the batchers, and the process
exits 0. A second signal stops at once.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from collections.abc import Sequence
from types import FrameType

import uvicorn

from model.checkpoint import model_folders

from .app import create_app
from .settings import Settings, log_settings, settings_from_cli
from .state import Phase, ServiceState

log = logging.getLogger("service")


class GracefulServer(uvicorn.Server):
    """uvicorn, with a draining phase between the first SIGTERM and the close of the socket."""

    def __init__(self, config: uvicorn.Config, state: ServiceState) -> None:
        super().__init__(config)
        self.state = state
        self.drain_deadline: float | None = None
        self.startup_failed = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.drain_deadline is None and sig in (signal.SIGTERM, signal.SIGINT):
            # Only a flag here: a signal handler must not take locks (metrics) the main thread may hold.
            self.drain_deadline = time.monotonic() + self.state.settings.shutdown_timeout_s
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        """Every 0.1 s: move a requested drain along, and stop when startup failed."""
        if self.drain_deadline is not None and not self.should_exit:
            if self.state.phase is not Phase.DRAINING:
                log.info("signal received: draining (readiness 503, new requests 503)")
                self.state.start_draining()
            timed_out = time.monotonic() >= self.drain_deadline
            if self.state.idle or timed_out:
                log.info("drained; shutting down" if not timed_out else "drain timed out; shutting down")
                self.should_exit = True
        if self.state.phase is Phase.FAILED and not self.should_exit:
            self.startup_failed = True
            self.should_exit = True
        return await super().on_tick(counter)


def serve(settings: Settings) -> int:
    """Run the service until it is stopped; the process exit code."""
    if not model_folders(settings.model_dir):
        log.error(
            "no model folders under %s (expected %s/<name>/config.json and model.safetensors); "
            "pass --model-dir or set VDVAE_MODEL_DIR",
            settings.model_dir.resolve(), settings.model_dir,
        )  # fmt: skip
        return 2
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.access_log,
        timeout_graceful_shutdown=max(1, int(settings.shutdown_timeout_s)),
        lifespan="on",
    )
    server = GracefulServer(config, app.state.service)
    server.run()
    if server.startup_failed:
        log.error("exiting: %s", app.state.service.problem)
        return 1
    return 0


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    settings = settings_from_cli(argv, prog)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    log_settings(settings, log)
    return serve(settings)


if __name__ == "__main__":
    sys.exit(main())
