"""The state of one running app (kept on `app.state.service`): settings, metrics, models, engine,
batchers, and where the service is in its life: loading -> warming up -> ready -> draining.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .batcher import Batcher
from .engine import Engine
from .errors import NotReady, ShuttingDown
from .inflight import InFlight
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
    registry: ModelRegistry = field(default_factory=ModelRegistry)
    engine: Engine | None = None
    batchers: dict[tuple[str, str], Batcher] = field(default_factory=dict)
    inflight: InFlight = field(default_factory=InFlight)  # model requests in the service
    phase: Phase = Phase.LOADING
    problem: str = "loading models"  # why not ready, for /health/ready

    def set_phase(self, phase: Phase, problem: str = "") -> None:
        if self.phase is Phase.DRAINING and phase is not Phase.DRAINING:
            return  # a shutdown that began during start-up is never undone
        self.phase = phase
        self.problem = problem
        self.metrics.ready.set(1 if phase is Phase.READY else 0)

    def start_draining(self) -> None:
        """Readiness turns 503 and new model requests get 503; queued and running work goes on."""
        if self.phase is not Phase.DRAINING:
            self.set_phase(Phase.DRAINING, "draining: the service is shutting down")

    def check_accepting(self) -> None:
        """Raise the 503 a model request gets when the service is not ready for it."""
        if self.phase is Phase.READY:
            return
        if self.phase is Phase.DRAINING:
            raise ShuttingDown("the service is shutting down and takes no new work")
        raise NotReady(f"the service is not ready: {self.problem}", headers={"Retry-After": "5"})

    def batcher(self, model: str, operation: str) -> Batcher:
        return self.batchers[(model, operation)]

    @property
    def idle(self) -> bool:
        """No model request in flight and nothing queued or computing."""
        return self.inflight.requests == 0 and not any(b.busy for b in self.batchers.values())
