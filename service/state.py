"""The state of one running app (kept on `app.state.service`): settings, metrics, models, engine,
the scheduler of its batchers, and where the service is in its life: loading -> warming up -> ready
-> draining.
"""

from __future__ import annotations

import asyncio
import enum
import math
import time
from dataclasses import dataclass, field

from .batching.engine import Engine
from .batching.scheduler import Scheduler
from .errors import NotReady, ServiceError, ShuttingDown
from .http.callers import Caller, default_policy
from .http.memory import ByteBudget, HeapTrimmer
from .inputs.parsing import Parser
from .metrics import Metrics
from .registry import ModelRegistry
from .settings import Settings


class Phase(enum.Enum):
    LOADING = "loading"
    WARMING_UP = "warming_up"
    READY = "ready"
    FAILED = "failed"  # no model could be loaded or warmed up: never ready
    DRAINING = "draining"


@dataclass
class ServiceState:
    settings: Settings
    metrics: Metrics
    parser: Parser = field(default_factory=Parser)  # where request bodies are parsed
    body_budget: ByteBudget = field(default_factory=lambda: ByteBudget(2**62))  # body bytes held at once
    trimmer: HeapTrimmer = field(default_factory=lambda: HeapTrimmer(0.0))  # heap back after bursts
    registry: ModelRegistry = field(default_factory=ModelRegistry)
    # {path: most body bytes} of the model endpoints, set with the registry (inputs/body_limits.py).
    endpoint_limits: dict[str, int] = field(default_factory=dict)
    engine: Engine | None = None
    phase: Phase = Phase.LOADING
    problem: str = "loading models"  # why not ready, for /health/ready
    drain_deadline: float = math.inf  # time.monotonic() by which draining ends, once it began
    # Admission, the in-flight counts and the batchers; admits while the phase is READY.
    scheduler: Scheduler = field(init=False)
    # The policy of a caller its key's line does not change, and of every caller without keys.
    caller_defaults: Caller = field(init=False)
    # Set once the start has ended, ready or failed.
    started: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        s = self.settings
        self.caller_defaults = default_policy(s)
        self.scheduler = Scheduler(
            self.metrics,
            self.refusal,
            max_batch_size=s.max_batch_size,
            max_batch_delay_s=s.max_batch_delay_ms / 1000.0,
            max_queue_images=s.max_queue_images,
            early_close=s.batch_early_close,
            small_pass_s=s.small_pass_ms / 1000.0,
        )

    def set_phase(self, phase: Phase, problem: str = "") -> None:
        if self.phase is Phase.DRAINING and phase is not Phase.DRAINING:
            return  # a shutdown that began during start-up is never undone
        self.phase = phase
        self.problem = problem
        self.metrics.ready.set(1 if phase is Phase.READY else 0)
        if phase in (Phase.READY, Phase.FAILED):
            self.started.set()

    def start_draining(self) -> None:
        """Readiness turns 503 and new model requests get 503; queued and running work goes on."""
        if self.drain_deadline == math.inf:
            self.drain_deadline = time.monotonic() + self.settings.shutdown_timeout_s
        if self.phase not in (Phase.DRAINING, Phase.FAILED):  # a failed start keeps its reason
            self.set_phase(Phase.DRAINING, "draining: the service is shutting down")

    def refusal(self) -> ServiceError | None:
        """The 503 a new model request gets now, or None while the service takes work."""
        if self.phase is Phase.READY:
            return None
        if self.phase is Phase.DRAINING:
            return ShuttingDown("the service is shutting down and takes no new work")
        return NotReady(f"the service is not ready: {self.problem}", headers={"Retry-After": "5"})

    @property
    def draining(self) -> bool:
        return self.phase is Phase.DRAINING

    @property
    def failed(self) -> bool:
        return self.phase is Phase.FAILED

    @property
    def idle(self) -> bool:
        """No model request in flight and nothing queued or computing."""
        return self.scheduler.idle
