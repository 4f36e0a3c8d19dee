"""The HTTP server: uvicorn with our connection protocol (connections.py), a draining phase between
SIGTERM and the close of the socket, and a bounded end.

Shutdown on SIGTERM (or Ctrl+C): readiness turns 503 and new model requests get 503 while the
socket stays open; once nothing is queued or computing (or after shutdown_timeout_s) uvicorn's
graceful shutdown gives the open responses shutdown_close_s more, then cancels what still runs (its
client gets a 503 problem, see middleware.py), the lifespan stops the batchers, and the process exits
0. A second signal stops at once. From SIGTERM to exit: at most shutdown_timeout_s +
shutdown_close_s + one model pass, whatever the clients do.
"""

from __future__ import annotations

import logging
import signal
import time
from types import FrameType

import uvicorn
from fastapi import FastAPI

from .connections import ConnectionLimits, protocol_class
from .settings import Settings
from .state import Phase, ServiceState

log = logging.getLogger("service")


def uvicorn_config(app: FastAPI, settings: Settings) -> uvicorn.Config:
    """uvicorn's configuration for `app`: our protocol and every limit from the settings."""
    state: ServiceState = app.state.service
    limits = ConnectionLimits.from_settings(settings, state.metrics)
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=protocol_class(limits),
        ws="none",
        lifespan="on",
        log_level=settings.log_level,
        access_log=settings.access_log,
        timeout_keep_alive=settings.keepalive_timeout_s,  # type: ignore[arg-type]  (uvicorn takes floats)
        timeout_graceful_shutdown=settings.shutdown_close_s,  # type: ignore[arg-type]
    )


class GracefulServer(uvicorn.Server):
    """uvicorn, with a draining phase before the socket closes and the connection timeouts checked
    every tick."""

    def __init__(self, config: uvicorn.Config, state: ServiceState) -> None:
        super().__init__(config)
        self.state = state
        self.drain_requested = False
        self.startup_failed = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.drain_requested and sig in (signal.SIGTERM, signal.SIGINT):
            # Only a flag here: a signal handler must not take locks (metrics) the main thread may hold.
            self.drain_requested = True
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        """Every 0.1 s: connection timeouts, a requested drain, and stopping when startup failed."""
        now = time.monotonic()
        for connection in list(self.server_state.connections):
            check = getattr(connection, "check_timeouts", None)
            if check is not None:
                check(now)
        if self.drain_requested and not self.should_exit:
            if self.state.phase is not Phase.DRAINING:
                log.info("signal received: draining (readiness 503, new requests 503)")
                self.state.start_draining()
            timed_out = now >= self.state.drain_deadline
            if self.state.idle or timed_out:
                log.info("drained; shutting down" if not timed_out else "drain timed out; shutting down")
                self.should_exit = True
        if self.state.phase is Phase.FAILED and not self.should_exit:
            self.startup_failed = True
            self.should_exit = True
        return await super().on_tick(counter)
