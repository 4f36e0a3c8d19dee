"""/sample/stream on a cascade: one event per stage.

A cascade's stages run one after another (cascade.cascade_stages), so its stream shows stage by
stage: a `preview` event after each stage but the last, with that stage's images (the base
model's low-resolution images first, then each super-resolution stage's), and a `final` event with
the last stage's images, identical to /sample's on the cascade. The events have /sample/stream's
fields: `stage` counts cascade stages, `resolution` is the stage's image size, `layers` the latent
layers drawn so far over all stages. Unlike a single model's stream, every stage's work is queued
after the response began, so a full queue or a deadline is an `error` event, not a problem answer.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request

from .cascade import CascadePlan, cascade_stages
from .errors import ServiceError, count_failure, problem_body
from .items import Image
from .routes import sampled_data, stage_runner
from .state import ServiceState
from .streaming import sse


class CascadeStream:
    """One streaming request on a cascade: its events, and whether it was answered."""

    def __init__(
        self, request: Request, svc: ServiceState, plan: CascadePlan, timeout_ms: int | None
    ) -> None:
        self.request, self.svc, self.plan, self.timeout_ms = request, svc, plan, timeout_ms
        self.answered = False

    def payload(self, k: int, images: list[Image]) -> dict[str, Any]:
        stages = self.plan.cascade.stages
        return {
            "stage": k,
            "stages": len(stages),
            "resolution": stages[k].hp.image_size,
            "layers": sum(m.num_layers for m in stages[: k + 1]),
            "num_layers": sum(m.num_layers for m in stages),
            "data": sampled_data(images, self.plan.items),
        }

    async def events(self) -> AsyncIterator[bytes]:
        last = len(self.plan.cascade.stages) - 1
        k = 0
        try:
            run = stage_runner(self.request, self.svc, self.timeout_ms)
            async for images in cascade_stages(self.plan, run):
                if k < last:
                    yield sse("preview", self.payload(k, images))
                else:
                    self.answered = True
                    name = self.plan.cascade.name
                    yield sse(
                        "final", {"created": int(time.time()), "model": name, **self.payload(k, images)}
                    )
                k += 1
        except ServiceError as e:
            self.answered = True
            count_failure(self.request, e.reason)
            body = problem_body(
                e.status, e.title, e.detail, slug=e.slug, instance=self.request.url.path,
                request_id=self.request.state.request_id, **e.extra,
            )  # fmt: skip
            yield sse("error", body)

    def close(self) -> None:
        """The response ended: a client that left before its answer counts as cancelled (its queued
        images are dropped by the wait for results, which sees the disconnect)."""
        if not self.answered:
            count_failure(self.request, "cancelled")
