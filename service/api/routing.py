"""How a model endpoint runs: admitted, typed, and without FastAPI's per-request machinery.

A router declared with `route_class=DirectModelRoute` (images/, latents/, openai/, and
inference_protocol/'s infer) holds model endpoints. Each is `async def endpoint(request:
ModelRequest) -> Answer`: the service finds the request's caller (its API key, or client address)
and priority (X-Priority; 403 above what the key may ask for), admits it before the endpoint starts
(503 unless ready; counted in flight by the scheduler) and keeps it in flight until the answer's
last byte is sent. Every model endpoint documents the X-Priority header and the 403 and 429 answers
this path may give. The endpoint reads its own body into typed input (`ModelRequest.parse`: inline
for small bodies, else on the parsing thread), hands its items to an operation
(`ModelRequest.run(SAMPLE, model, items)`: SampleItems in, images out) and returns a Response or a
pydantic answer, sent as JSON.

FastAPI documents a model endpoint like any route (its response_model, responses and openapi_extra
make the OpenAPI schema) but does not solve dependencies for it, read its body, or validate and
re-serialise the answer it built itself: under load those cost more of the event loop's CPU than
the rest of a /sample request. Errors reach the app's exception handlers (service/errors.py) as
raised.

The route class also says how its POSTs are reached: `DirectDispatch`, the app's innermost
middleware, hands them to the route's handler from an exact-path table of the `DirectModelRoute`
routes, past the layers between (Starlette's exception middleware, FastAPI's exit stacks, the
routers' matching and their request wrappers), and does for these routes what those did. The
`direct_dispatch` setting turns it off (every request then takes the router), which is how its
saving is measured (docs/performance.md).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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


class DirectModelRoute(APIRoute):
    """The route class of the model endpoints' routers: each endpoint runs admitted, typed and lean,
    and its POST is dispatched directly (`DirectDispatch`)."""

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


class DirectDispatch:
    """ASGI middleware, the innermost of the app's own: a POST to a `DirectModelRoute`'s path is
    handed to that route's handler here. What the layers it skips do for these routes is done here:
    the route in the scope (as the router leaves it), the Request, and an exception raised before
    the answer starts turned into an answer by the app's handler for its class (service/errors.py;
    the exception middleware's lookup). Other requests, and every request when the app is mounted
    under a root path, take the normal path.
    """

    def __init__(
        self, app: ASGIApp, routes: Mapping[str, APIRoute], handlers: Mapping[Any, Callable[..., Any]]
    ) -> None:
        """routes: {path: route} of the direct routes (`direct_routes`); handlers: the app's exception
        handlers by class (`app.exception_handlers`)."""
        self.app = app
        self.routes = {path: (route, route.get_route_handler()) for path, route in routes.items()}
        # Exception (500) is the outermost middleware's, as in Starlette; the tracking middleware
        # answers those first.
        self.handlers = {cls: h for cls, h in handlers.items() if cls is not Exception and cls != 500}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = None
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            target = self.routes.get(scope["path"])
        if target is None:
            await self.app(scope, receive, send)
            return
        route, handle = target
        scope["route"], scope["endpoint"], scope["path_params"] = route, route.endpoint, {}
        started = False

        async def send_tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        request = Request(scope, receive, send_tracked)
        try:
            response = await handle(request)
            await response(scope, receive, send_tracked)
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None or started:
                raise
            answer = await handler(request, exc)
            await answer(scope, receive, send)

    def _handler(self, exc: Exception) -> Callable[..., Any] | None:
        for cls in type(exc).__mro__:
            if cls in self.handlers:
                return self.handlers[cls]
        return None


def leaf_routes(routes: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    """Every route, in included routers too (FastAPI keeps those wrapped; ours have no prefix)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from leaf_routes(inner.routes)
        else:
            yield route


def direct_routes(routes: Iterable[BaseRoute]) -> dict[str, APIRoute]:
    """{path: route} of every DirectModelRoute that takes POST at a fixed path."""
    return {
        route.path: route
        for route in leaf_routes(routes)
        if isinstance(route, DirectModelRoute) and route.methods == {"POST"} and "{" not in route.path
    }
