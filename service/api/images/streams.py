"""/sample/stream's answer: server-sent events, coarse to fine.

A single model's stream (`SampleStream`) queues its images on the model's SAMPLE_STREAM batcher,
where streaming requests share one top-down pass per batch. After each resolution but the last,
every request gets a `preview` event: the final images given the latent layers drawn so far, with
the layers below at their prior mean (temperature 0). Then one `final` event with the samples,
identical to /sample's for the same seeds and parameters. A client that disconnects stops its
images' work at the next resolution.

A cascade's stream (`CascadeStream`) shows stage by stage: a `preview` event after each stage but
the last, with that stage's images (the base model's low-resolution images first, then each
super-resolution stage's), and a `final` event with the last stage's images, identical to /sample's
on the cascade. The events have the same fields: `stage` counts cascade stages, `resolution` is the
stage's image size, `layers` the latent layers drawn so far over all stages. Its stages are queued
after the response began, so a full queue there is an `error` event, not a problem answer.

A problem after the stream began (deadline, a failing image) is an `error` event carrying the
problem document; before that (bad input, full queue) the answer is the usual problem+json.
`EventStream` is the response: text/event-stream, with a callback that runs however it ends
(finished, client gone, failed, or never started), where the stream lets go of its work.

Both streams give their stages as `Shown` (`ImageStream.stages()`); `sample_events` writes them as
this endpoint's events, and another protocol's streaming answer writes them as its own (OpenAI's
partial images: api/openai/streams.py).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from model.topdown import resolution_stops

from ...batching.items import Image, SampleItem, StreamItem
from ...batching.operations import SAMPLE_STREAM
from ...batching.previews import StageQueue
from ...errors import ServiceError, count_failure, problem_body
from ...registry import ServedModel
from ..answers import sampled_data
from ..openapi import inlined_schema
from ..routing import ModelRequest
from .bodies import StreamStage
from .cascades import CascadePlan, cascade_stages

EVENTS = """`text/event-stream`, one event per resolution of the top-down pass:

- `preview` (each resolution but the last): `{"stage", "stages", "resolution", "layers",
  "num_layers", "data": [{"b64_json", "seed", "label"}]}`: the final images given the `layers`
  latent layers drawn so far (the layers below at their prior mean), as base64 PNGs, in request
  order, each with its seed and the label it is drawn with (as /sample reports them);
- `final`: the same fields plus `created` and `model`: the samples, identical to /sample's;
- `error`: a problem document (RFC 9457) when the request fails after the stream began.
"""

# One server-sent event (OpenAPI 3.2's reading of text/event-stream): its `event` name and its
# `data`, JSON of a stage (preview or final) or of a problem (error).
EVENT_SCHEMA = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "enum": ["preview", "final", "error"]},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {
                "anyOf": [inlined_schema(StreamStage), {"$ref": "#/components/schemas/Problem"}]
            },
        },
    },
    "required": ["data"],
}


def sse(event: str, data: Any) -> bytes:
    """One server-sent event: its name and a JSON payload on one `data:` line."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def error_event(request: ModelRequest, error: ServiceError) -> bytes:
    """The `error` event of a problem that came after the stream began (counted as a failure)."""
    count_failure(request, error.reason)
    body = problem_body(
        error.status, error.title, error.detail, slug=error.slug, instance=request.url.path,
        request_id=request.state.request_id, **error.extra,
    )  # fmt: skip
    return sse("error", body)


class EventStream(StreamingResponse):
    """A text/event-stream response that calls `on_close` once it ends, for any reason."""

    media_type = "text/event-stream"

    def __init__(
        self, events: AsyncIterator[bytes], on_close: Callable[[], None], headers: dict[str, str]
    ) -> None:
        # no-cache: never replayed from a cache; X-Accel-Buffering: a proxy (nginx) passes each
        # event on when it arrives instead of buffering the response.
        super().__init__(events, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **headers})
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_close()


@dataclass(frozen=True)
class Shown:
    """One stage of a streamed sample, as each protocol's events show it: a preview, or (the last)
    the final images."""

    index: int  # 0 .. count - 1
    count: int  # stages in all; the last is the final images
    resolution: int  # the stage's image size
    layers: int  # latent layers drawn so far
    num_layers: int  # latent layers in all
    images: list[Image]

    @property
    def final(self) -> bool:
        return self.index == self.count - 1


class ImageStream:
    """A streaming request's stages (`stages()`: the previews in order, then the final images), and
    whether it was answered: its final images or its error went out. `close()` runs however the
    response ends."""

    name: str  # the model or cascade
    items: list[SampleItem]  # the images' own seeds and labels
    count: int  # stages in all
    answered: bool = False

    async def stages(self) -> AsyncIterator[Shown]:
        """The stages in order; a problem after the stream began is raised (ServiceError)."""
        try:
            async for shown in self._stages():
                if shown.final:
                    self.answered = True
                yield shown
        except ServiceError:
            self.answered = True
            raise

    def _stages(self) -> AsyncIterator[Shown]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class SampleStream(ImageStream):
    """One streaming request on a single model: its queued images and its previews."""

    def __init__(
        self, request: ModelRequest, model: ServedModel, items: list[SampleItem], timeout_ms: int | None
    ) -> None:
        self.request, self.model, self.items, self.name = request, model, items, model.name
        self.ctx = request.context(timeout_ms)
        self.count = len(resolution_stops(model.hp.layer_resolutions))
        svc = request.service
        self.sink = StageQueue(len(items), self.ctx, asyncio.get_running_loop(), svc.metrics, model.name)
        work = [StreamItem(it, self.sink, i) for i, it in enumerate(items)]
        self.submission = request.submit(SAMPLE_STREAM, model, work, self.ctx)  # or 503
        self.submission.results.add_done_callback(lambda _: self.sink.close())  # no stage after that

    async def _stages(self) -> AsyncIterator[Shown]:
        L = self.model.num_layers
        async for stage, images in self.sink.stages():
            yield Shown(stage.index, self.count, stage.resolution, stage.layers, L, images)
        images = self.submission.results.result()  # the first failing image's problem, if any
        yield Shown(self.count - 1, self.count, self.model.hp.image_size, L, L, images)

    def close(self) -> None:
        """The response ended: if the client left before its answer, its work is dropped (queued
        images before compute, a running pass at its next resolution)."""
        if not self.answered:
            self.ctx.cancelled = True
            count_failure(self.request, "cancelled")
        self.submission.close()


class CascadeStream(ImageStream):
    """One streaming request on a cascade: a stage per cascade stage."""

    def __init__(self, request: ModelRequest, plan: CascadePlan, timeout_ms: int | None) -> None:
        self.request, self.plan, self.timeout_ms = request, plan, timeout_ms
        self.items, self.name = plan.items, plan.cascade.name
        self.count = len(plan.cascade.stages)

    async def _stages(self) -> AsyncIterator[Shown]:
        stages = self.plan.cascade.stages
        num_layers = sum(m.num_layers for m in stages)
        k = 0
        async for images in cascade_stages(self.plan, self.request, self.timeout_ms):
            layers = sum(m.num_layers for m in stages[: k + 1])
            yield Shown(k, self.count, stages[k].hp.image_size, layers, num_layers, images)
            k += 1

    def close(self) -> None:
        """The response ended: a client that left before its answer counts as cancelled (its queued
        images are dropped by the wait for results, which sees the disconnect)."""
        if not self.answered:
            count_failure(self.request, "cancelled")


async def sample_events(request: ModelRequest, stream: ImageStream) -> AsyncIterator[bytes]:
    """/sample/stream's events: `preview` per stage but the last, then `final`, or `error`."""
    try:
        async for shown in stream.stages():
            data = {
                "stage": shown.index,
                "stages": shown.count,
                "resolution": shown.resolution,
                "layers": shown.layers,
                "num_layers": shown.num_layers,
                "data": sampled_data(shown.images, stream.items),
            }
            if shown.final:
                yield sse("final", {"created": int(time.time()), "model": stream.name, **data})
            else:
                yield sse("preview", data)
    except ServiceError as e:
        yield error_event(request, e)
