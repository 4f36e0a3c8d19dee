"""How many model requests are in the service, and how many of them have images in a batcher.

Counted where requests enter and leave (the routes), so a batch window can ask in O(1) whether
another request could still add images to it, without walking any queue.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class InFlight:
    requests: int = 0  # model requests admitted and not yet answered
    queued: int = 0  # of those, the ones whose images wait in a batcher or are being computed

    @property
    def could_join(self) -> bool:
        """Whether a request is in flight without images in a batcher: being read and validated,
        or being answered (a closed-loop client sends its next request right after). Either may
        soon add images to an open batch window."""
        return self.requests > self.queued
