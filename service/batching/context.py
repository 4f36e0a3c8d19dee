"""What the batcher and the engine know about the request an item belongs to: its deadline, whether
its client is still there, who it is from and at which priority (the fair share's order).

The deadline is end to end (from arrival) and checked three times: when the batch forms, in the
worker thread just before the model pass, and by the waiting request (scheduler.Submission.wait),
which answers 504 at the deadline even if a pass that started in time is still running. A request
whose client disconnected is marked cancelled, so its items are dropped before compute.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..errors import Cancelled, DeadlineExceeded, ServiceError
from ..http.callers import UNKNOWN, Caller, Priority


@dataclass
class RequestContext:
    request_id: str
    deadline: float  # time.monotonic() after which the request is abandoned
    timeout_s: float  # the deadline as a duration, for messages
    cancelled: bool = field(default=False)
    caller: Caller = UNKNOWN  # its API key (or client address), with the key's weight and limits
    priority: Priority = Priority.NORMAL

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def problem(self, now: float | None = None) -> ServiceError | None:
        """Why this request's items must not be computed any more, or None while they may be."""
        if self.cancelled:
            return Cancelled("the client disconnected")
        if (now if now is not None else time.monotonic()) >= self.deadline:
            return self.deadline_exceeded()
        return None

    def deadline_exceeded(self) -> DeadlineExceeded:
        return DeadlineExceeded(
            f"the request was not served within its {self.timeout_s:g} s deadline; it was not computed "
            "(or its result was discarded). Retry later, ask for fewer images, or raise timeout_ms."
        )
