"""How a model endpoint runs: admitted, typed, and without FastAPI's per-request machinery.

A router declared with `route_class=ModelRoute` (images/, latents/) holds model endpoints. Each is
`async def endpoint(request: ModelRequest) -> Answer`: the service finds the request's caller (its
API key, or client address) and priority (X-Priority; 403 above what the key may ask for), admits
it before the endpoint starts (503 unless ready; counted in flight by the scheduler) and keeps it in
flight until the answer's last byte is sent. Every model endpoint documents the X-Priority header
and the 403 and 429 answers this path may give. The endpoint reads its own body into typed input
(`ModelRequest.parse`: inline for small bodies, else on the parsing thread), hands its items to an
operation (`ModelRequest.run(SAMPLE, model, items)`: SampleItems in, images out) and returns a
Response or a pydantic answer, sent as JSON.

FastAPI documents a model endpoint like any route (its response_model, responses and openapi_extra
make the OpenAPI schema) but does not solve dependencies for it, read its body, or validate and
re-serialise the answer it built itself: under load those cost more of the event loop's CPU than
the rest of a /sample request. Errors reach the app's exception handlers (service/errors.py) as
raised.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.types import Receive, Scope, Send

from ..batching.context import RequestContext
from ..batching.operations import ItemT, Operation, ResultT
from ..batching.scheduler import Admission, Submission
from ..http.callers import PRIORITY_HEADER, Caller, Priority, caller_of, request_priority
from ..inputs.parsing import read_body
from ..inputs.validation import timeout_s
from ..registry import ServedModel
from ..state import ServiceState
from .bodies import problem_responses

T = TypeVar("T")
# A body's bytes and Content-Type -> the endpoint's typed input (request, model, items), built with
# the service's settings and models; run off the event loop for large bodies.
InputBuilder = Callable[[bytes, str, ServiceState], T]


def service_state(request: Request) -> ServiceState:
    """The state of the app serving `request`."""
    return request.app.state.service


class ModelRequest(Request):
    """A request to a model endpoint, admitted: the endpoint's one argument."""

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        service: ServiceState,
        admission: Admission,
        caller: Caller,
        priority: Priority,
    ) -> None:
        super().__init__(scope, receive)
        self.service = service
        self.admission = admission
        self.caller = caller
        self.priority = priority

    async def parse(self, build: InputBuilder[T]) -> T:
        """Read the body and turn it into the endpoint's input with `build`, off the loop when large."""
        raw = await read_body(self)
        content_type = self.headers.get("content-type", "")
        return await self.service.parser.run(len(raw), build, raw, content_type, self.service)

    def context(self, timeout_ms: int | None) -> RequestContext:
        """The request's context, its deadline counted from its arrival; 504 if that has passed."""
        timeout = timeout_s(timeout_ms, self.service.settings)
        arrival = getattr(self.state, "arrival", time.monotonic())
        ctx = RequestContext(
            request_id=self.state.request_id,
            deadline=arrival + timeout,
            timeout_s=timeout,
            caller=self.caller,
            priority=self.priority,
        )
        if ctx.remaining() <= 0:  # e.g. a slow upload used it all: never queue expired work
            raise ctx.deadline_exceeded()
        return ctx

    async def run(
        self,
        op: Operation[ItemT, ResultT],
        model: ServedModel,
        items: Sequence[ItemT],
        timeout_ms: int | None,
    ) -> list[ResultT]:
        """The items' results from `op` on `model`, in order, within the request's deadline."""
        return await self.admission.run(op, model, items, self.context(timeout_ms), self.disconnected)

    def submit(
        self, op: Operation[ItemT, ResultT], model: ServedModel, items: Sequence[ItemT], ctx: RequestContext
    ) -> Submission[ResultT]:
        """Queue the items and return at once (a stream waits for them as it sends its events)."""
        return self.admission.submit(op, model, items, ctx)

    async def disconnected(self) -> None:
        """Return when the client disconnects (vLLM's listen_for_disconnect: is_disconnected() misses
        it while a handler awaits). Only once the body has been read."""
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                return


ModelEndpoint = Callable[[ModelRequest], Awaitable[Response | BaseModel]]


PRIORITY_PARAMETER = {
    "name": PRIORITY_HEADER,
    "in": "header",
    "required": False,
    "description": "The request's priority: passes take higher priorities' images first, fairly "
    "within each. high only for API keys allowed it (403 otherwise; any caller of a service "
    "without keys).",
    "schema": {"type": "string", "enum": [p.label for p in Priority], "default": Priority.NORMAL.label},
}
# The answers of this request path beside each endpoint's own: the priority, and its caller's limits.
ROUTE_ERRORS = problem_responses(403, 429)


class ModelRoute(APIRoute):
    """The route class of the model endpoints' routers."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        responses = {**(kwargs.get("responses") or {}), **ROUTE_ERRORS}
        kwargs["responses"] = dict(sorted(responses.items(), key=lambda entry: str(entry[0])))
        extra = dict(kwargs.get("openapi_extra") or {})
        extra["parameters"] = [*extra.get("parameters", []), PRIORITY_PARAMETER]
        kwargs["openapi_extra"] = extra
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint: ModelEndpoint = self.endpoint

        async def handle(request: Request) -> Response:
            service = service_state(request)
            caller = caller_of(request.scope, service.caller_defaults)
            priority = request_priority(request.scope, caller)
            admission = service.scheduler.admit()
            try:
                model_request = ModelRequest(
                    request.scope, request.receive, service, admission, caller, priority
                )
                answer = await endpoint(model_request)
            except BaseException:
                admission.release()
                raise
            response = answer if isinstance(answer, Response) else json_response(answer)
            return SentThenReleased(response, admission.release)

        return handle


def json_response(answer: BaseModel) -> Response:
    """The answer's JSON, as its route's response_model documents it."""
    return Response(answer.model_dump_json(by_alias=True), media_type="application/json")


class SentThenReleased(Response):
    """An answer whose request stays in flight until its last byte is sent (or sending failed), so
    a draining server never exits with an answer still on the wire."""

    def __init__(self, answer: Response, release: Callable[[], None]) -> None:
        # Only delegates: the answer keeps its own status, headers and body.
        self.answer, self.release = answer, release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.answer(scope, receive, send)
        finally:
            self.release()
