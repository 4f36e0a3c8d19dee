"""The HTTP server: uvicorn with our connection protocol (connections.py), a draining phase between
SIGTERM and the close of the socket, and a bounded end.

Shutdown on SIGTERM (or Ctrl+C): readiness turns 503, new model requests get 503 and every answer
closes its connection while the socket stays open; once nothing is queued or computing and no
connection has been owed an answer for QUIET_S (or after shutdown_timeout_s) uvicorn's graceful
shutdown gives the open responses shutdown_close_s more, then cancels what still runs (its
client gets a 503 problem, see middleware.py), the app's lifespan stops the batchers, and the process
exits 0. A second signal stops at once. From SIGTERM to exit: at most shutdown_timeout_s +
shutdown_close_s + one model pass, whatever the clients do.
"""

from __future__ import annotations

import logging
import signal
import time
from types import FrameType
from typing import Protocol

import uvicorn
from starlette.types import ASGIApp

from ..metrics import Metrics
from ..settings import Settings
from .connections import ConnectionLimits, LimitedHttpToolsProtocol, protocol_class

log = logging.getLogger("service")

# The drain ends once no connection has been owed an answer for this long: a load balancer that still
# sends requests here gets 503s (which it retries elsewhere) until it takes the replica out, instead of
# connections reset by the socket's close.
QUIET_S = 0.3


class Lifecycle(Protocol):
    """What the server needs of the app it serves (service.state.ServiceState): its metrics, to
    start draining, to know when the drain is done, and whether the app's start failed."""

    metrics: Metrics

    @property
    def drain_deadline(self) -> float: ...  # time.monotonic() by which the drain ends

    @property
    def draining(self) -> bool: ...

    @property
    def idle(self) -> bool: ...  # nothing in flight, queued or computing

    @property
    def failed(self) -> bool: ...

    def start_draining(self) -> None: ...


def uvicorn_config(app: ASGIApp, settings: Settings, state: Lifecycle) -> uvicorn.Config:
    """uvicorn's configuration for `app`: our protocol and every limit from the settings."""
    limits = ConnectionLimits.from_settings(settings, state.metrics, draining=lambda: state.draining)
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

    def __init__(self, config: uvicorn.Config, state: Lifecycle) -> None:
        super().__init__(config)
        self.state = state
        self.drain_requested = False
        self.startup_failed = False
        # time.monotonic() when a connection was last owed an answer, or when the drain began
        self.owed_since = 0.0

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.drain_requested and sig in (signal.SIGTERM, signal.SIGINT):
            # Only a flag here: a signal handler must not take locks (metrics) the main thread may hold.
            self.drain_requested = True
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        """Every 0.1 s: connection timeouts, a requested drain, and stopping when startup failed."""
        now = time.monotonic()
        draining = self.drain_requested and not self.should_exit
        connections = [c for c in self.server_state.connections if isinstance(c, LimitedHttpToolsProtocol)]
        if draining and not self.state.draining:
            log.info("signal received: draining (readiness 503, new requests 503)")
            self.state.start_draining()  # from now on each new request's answer closes its connection
            for connection in connections:
                connection.drain()  # and so do the answers already under way
            self.owed_since = now
        for connection in connections:
            connection.check_timeouts(now)
            if draining and connection.owed_answer(now):
                self.owed_since = now
        if draining:
            timed_out = now >= self.state.drain_deadline
            if (self.state.idle and now - self.owed_since >= QUIET_S) or timed_out:
                log.info("drained; shutting down" if not timed_out else "drain timed out; shutting down")
                self.should_exit = True
        if self.state.failed and not self.should_exit:
            self.startup_failed = True
            self.should_exit = True
        return await super().on_tick(counter)
