"""The state of one running app (kept on `app.state.service`): settings, metrics, models, engine,
batchers, and where the service is in its life: loading -> warming up -> ready -> draining.
"""

from __future__ import annotations

import enum
import math
import time
from dataclasses import dataclass, field

from .batcher import Batcher
from .engine import Engine
from .errors import NotReady, ShuttingDown
from .inflight import InFlight
from .memory import ByteBudget, HeapTrimmer
from .metrics import Metrics
from .parsing import Parser
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
    # {path: most body bytes} of the model endpoints, set with the registry (body_limits.py).
    endpoint_limits: dict[str, int] = field(default_factory=dict)
    engine: Engine | None = None
    batchers: dict[tuple[str, str], Batcher] = field(default_factory=dict)
    inflight: InFlight = field(default_factory=InFlight)  # model requests in the service
    phase: Phase = Phase.LOADING
    problem: str = "loading models"  # why not ready, for /health/ready
    drain_deadline: float = math.inf  # time.monotonic() by which draining ends, once it began

    def set_phase(self, phase: Phase, problem: str = "") -> None:
        if self.phase is Phase.DRAINING and phase is not Phase.DRAINING:
            return  # a shutdown that began during start-up is never undone
        self.phase = phase
        self.problem = problem
        self.metrics.ready.set(1 if phase is Phase.READY else 0)

    def start_draining(self) -> None:
        """Readiness turns 503 and new model requests get 503; queued and running work goes on."""
        if self.drain_deadline == math.inf:
            self.drain_deadline = time.monotonic() + self.settings.shutdown_timeout_s
        if self.phase not in (Phase.DRAINING, Phase.FAILED):  # a failed start keeps its reason
            self.set_phase(Phase.DRAINING, "draining: the service is shutting down")

    def check_accepting(self) -> None:
        """Raise the 503 a model request gets when the service is not ready for it."""
        if self.phase is Phase.READY:
            return
        if self.phase is Phase.DRAINING:
            raise ShuttingDown("the service is shutting down and takes no new work")
        raise NotReady(f"the service is not ready: {self.problem}", headers={"Retry-After": "5"})

    def batcher(self, model: str, operation: str) -> Batcher:
        """The queue of a model and operation; a 422 naming the model's kind when it has none (a
        super-resolution model does not sample from its prior alone, a plain one does not upscale)."""
        try:
            return self.batchers[(model, operation)]
        except KeyError:
            raise self.registry.unsupported(model, operation) from None

    @property
    def idle(self) -> bool:
        """No model request in flight and nothing queued or computing."""
        return self.inflight.requests == 0 and not any(b.busy for b in self.batchers.values())
