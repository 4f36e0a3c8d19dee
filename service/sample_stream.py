"""POST /sample/stream: a sample as server-sent events, coarse to fine.

The body is /sample's, checked by the same functions (validation.sample_items), so the images are
/sample's. Streaming requests queue on their own batcher (`sample_stream`) and share one top-down
pass per batch; after each resolution but the last, every request gets a `preview` event: the
final images given the latent layers drawn so far, with the layers below at their prior mean
(temperature 0). Then one `final` event with the samples, identical to /sample's for the same seeds
and parameters. A problem after the stream began (deadline, a failing image) is an `error` event
carrying the problem document; before that (bad input, full queue) the answer is the usual
problem+json. A client that disconnects stops its images' work at the next resolution. A cascade
streams one event per stage instead (service.cascade_stream).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from model.topdown import resolution_stops

from . import responses, schemas
from .cascade_stream import CascadeStream
from .errors import ServiceError, count_failure, problem_body
from .items import Image, SampleItem, StreamItem
from .model_route import admit, service
from .registry import ServedCascade, ServedModel
from .routes import MODEL_ERRORS, labels_header, prepare, request_context, sample_request, sampled_data
from .state import ServiceState
from .streaming import EventStream, StageQueue, sse

router = APIRouter()

EVENTS = """`text/event-stream`, one event per resolution of the top-down pass:

- `preview` (each resolution but the last): `{"stage", "stages", "resolution", "layers",
  "num_layers", "data": [{"b64_json", "seed", "label"}]}`: the final images given the `layers`
  latent layers drawn so far (the layers below at their prior mean), as base64 PNGs, in request
  order, each with its seed and the label it is drawn with (as /sample reports them);
- `final`: the same fields plus `created` and `model`: the samples, identical to /sample's;
- `error`: a problem document (RFC 9457) when the request fails after the stream began.
"""


class StreamStage(BaseModel):
    """The data of a `preview` event (and, with `created` and `model`, of the `final` one)."""

    stage: int
    stages: int
    resolution: int
    layers: int
    num_layers: int
    data: list[responses.SampledImage]
    created: int | None = None
    model: str | None = None


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
                "anyOf": [schemas.inlined_schema(StreamStage), {"$ref": "#/components/schemas/Problem"}]
            },
        },
    },
    "required": ["data"],
}


class SampleStream:
    """One streaming request: its queued images, its previews, and its events."""

    def __init__(
        self,
        request: Request,
        svc: ServiceState,
        model: ServedModel,
        items: list[SampleItem],
        timeout_ms: int | None,
    ) -> None:
        self.request, self.svc, self.model, self.items = request, svc, model, items
        self.ctx = request_context(request, svc, timeout_ms)
        self.stages = len(resolution_stops(model.hp.layer_resolutions))
        self.sink = StageQueue(len(items), self.ctx, asyncio.get_running_loop(), svc.metrics, model.name)
        work = [StreamItem(it, self.sink, i) for i, it in enumerate(items)]
        self.futures = svc.batcher(model.name, "sample_stream").submit(work, self.ctx)  # or 503
        svc.inflight.queued += 1  # until the results are in: it cannot join another batch
        self._queued = True
        self.results = asyncio.gather(*self.futures)
        self.results.add_done_callback(self._results_in)
        self.answered = False  # the final or error event went out

    def _results_in(self, _: asyncio.Future) -> None:
        self._unqueue()
        self.sink.close()

    def _unqueue(self) -> None:
        if self._queued:
            self._queued = False
            self.svc.inflight.queued -= 1

    def payload(self, stage: int, resolution: int, layers: int, images: list[Image]) -> dict[str, Any]:
        return {
            "stage": stage,
            "stages": self.stages,
            "resolution": resolution,
            "layers": layers,
            "num_layers": self.model.num_layers,
            "data": sampled_data(images, self.items),
        }

    async def events(self) -> AsyncIterator[bytes]:
        try:
            async for stage, images in self.sink.stages():
                yield sse("preview", self.payload(stage.index, stage.resolution, stage.layers, images))
            images = self.results.result()  # the first failing image's problem, if any
            hp = self.model.hp
            final = self.payload(self.stages - 1, hp.image_size, hp.num_layers, images)
            self.answered = True
            yield sse("final", {"created": int(time.time()), "model": self.model.name, **final})
        except ServiceError as e:
            self.answered = True
            count_failure(self.request, e.reason)
            body = problem_body(
                e.status, e.title, e.detail, slug=e.slug, instance=self.request.url.path,
                request_id=self.ctx.request_id, **e.extra,
            )  # fmt: skip
            yield sse("error", body)

    def close(self) -> None:
        """The response ended: if the client left before its answer, its work is dropped (queued
        images before compute, a running pass at its next resolution)."""
        if not self.answered:
            self.ctx.cancelled = True
            count_failure(self.request, "cancelled")
        for f in self.futures:
            if not f.done():
                f.cancel()
        if self.results.done() and not self.results.cancelled():
            self.results.exception()  # retrieved: an error was sent as an event, or nobody was there
        self._unqueue()


@router.post(
    "/sample/stream",
    summary="Draw images from the prior, streamed coarse to fine (server-sent events)",
    response_class=EventStream,
    status_code=200,
    responses={
        200: {"content": {"text/event-stream": {"schema": EVENT_SCHEMA}}, "description": EVENTS},
        **MODEL_ERRORS,
    },
    openapi_extra=schemas.json_request_body(schemas.SampleRequest),
    tags=["images"],
)
async def sample_stream(request: Request) -> EventStream:
    """/sample's images as server-sent events: a `preview` per resolution of the top-down pass (the
    final images given the layers drawn so far), then the `final` images, identical to /sample's.
    The seeds and labels are in the X-Seeds and X-Labels headers and in every event."""
    svc = service(request)
    release = admit(svc)
    try:
        body, model, items = await prepare(request, svc, sample_request)
        if isinstance(model, ServedCascade):  # one event per stage (service.cascade_stream)
            stream = CascadeStream(request, svc, items, body.timeout_ms)
            items = items.items
        else:
            stream = SampleStream(request, svc, model, items, body.timeout_ms)
    except BaseException:
        release()
        raise

    def closed() -> None:
        stream.close()
        release()

    seeds = ",".join(str(it.seed) for it in items)
    headers = {"X-Seeds": seeds, **labels_header([it.label for it in items])}
    return EventStream(stream.events(), on_close=closed, headers=headers)
