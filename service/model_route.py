"""How the model endpoints run: admitted (503 unless ready; counted in flight), then the endpoint,
then its answer encoded, without FastAPI's per-request machinery.

FastAPI documents a `@model_endpoint` like any route (its response_model, responses and
openapi_extra make the OpenAPI schema), but runs it lean: no dependency solving, no body handling
(the endpoint reads and validates its own body: bodies.py), no response-model validation and
re-serialisation of the answer it built itself, no telemetry hooks. Under load those cost more of
the event loop's CPU than the rest of a /sample request (profiles in the README's Performance
section). Errors still reach the app's exception handlers (errors.py) as raised.

`DirectModelRoutes` goes one step further for their POSTs: it calls the route's handler from the
app's own middleware, past the layers between (Starlette's exception middleware, FastAPI's exit
stack, the router's matching and its request wrappers), and does for these routes what those did.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Mapping
from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .state import ServiceState

Endpoint = Callable[[Request], Awaitable[Any]]
E = TypeVar("E", bound=Endpoint)
MARK = "_vdvae_model_endpoint"


def model_endpoint(endpoint: E) -> E:
    """Mark `endpoint(request) -> Response | BaseModel` to run admitted and lean (see ServiceRoute)."""
    setattr(endpoint, MARK, True)
    return endpoint


def service(request: Request) -> ServiceState:
    return request.app.state.service


def admit(svc: ServiceState) -> Callable[[], None]:
    """503 unless the service is ready; else count a model request in flight, until the returned
    call (which may be called more than once) ends it."""
    svc.check_accepting()
    svc.inflight.requests += 1
    svc.metrics.inflight.inc()
    done = False

    def release() -> None:
        nonlocal done
        if not done:
            done = True
            svc.inflight.requests -= 1
            svc.metrics.inflight.dec()

    return release


def json_response(answer: BaseModel) -> Response:
    """The answer's JSON, as its route's response_model documents it."""
    return Response(answer.model_dump_json(by_alias=True), media_type="application/json")


class ServiceRoute(APIRoute):
    """The service routers' route class: a @model_endpoint runs admitted and lean; any other
    endpoint as FastAPI runs it."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        if not getattr(self.endpoint, MARK, False):
            return super().get_route_handler()
        endpoint: Endpoint = self.endpoint

        async def handle(request: Request) -> Response:
            release = admit(service(request))
            try:
                answer = await endpoint(request)
            except BaseException:
                release()
                raise
            response = answer if isinstance(answer, Response) else json_response(answer)
            return SentThenReleased(response, release)

        return handle


class SentThenReleased(Response):
    """An answer whose request stays in flight until its last byte is sent (or sending failed), so
    a draining server never exits with an answer still on the wire."""

    def __init__(self, answer: Response, release: Callable[[], None]) -> None:
        # Only delegates: the answer keeps its own status, headers and body.
        self.answer, self.release = answer, release

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await self.answer(scope, receive, send)
        finally:
            self.release()


class DirectModelRoutes:
    """ASGI middleware, the innermost of the app's own: a POST to a @model_endpoint's path is handed
    to that route's handler here. The layers it skips (README, Performance: their event-loop CPU per
    request) do little for these routes, and that is done here: the route in the scope (as the
    router leaves it), the Request, and an exception raised before the answer starts turned into an
    answer by the app's handler for its class (errors.py; the exception middleware's lookup). Other
    requests, and every request when the app is mounted under a root path, take the normal path.
    """

    def __init__(
        self, app: ASGIApp, routes: Mapping[str, APIRoute], handlers: Mapping[Any, Callable[..., Any]]
    ) -> None:
        """routes: {path: route} of the @model_endpoint POST routes (`direct_routes`); handlers: the
        app's exception handlers by class (`app.exception_handlers`)."""
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
    """{path: route} of every @model_endpoint that takes POST at a fixed path."""
    return {
        route.path: route
        for route in leaf_routes(routes)
        if isinstance(route, APIRoute)
        and getattr(route.endpoint, MARK, False)
        and route.methods == {"POST"}
        and "{" not in route.path
    }
