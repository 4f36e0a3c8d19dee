"""How the model endpoints run: admitted (503 unless ready; counted in flight), then the endpoint,
then its answer encoded, without FastAPI's per-request machinery.

FastAPI documents a `@model_endpoint` like any route (its response_model, responses and
openapi_extra make the OpenAPI schema), but runs it lean: no dependency solving, no body handling
(the endpoint reads and validates its own body: bodies.py), no response-model validation and
re-serialisation of the answer it built itself, no telemetry hooks. Under load those cost more of
the event loop's CPU than the rest of a /sample request (profiles in the README's Performance
section). Errors still reach the app's exception handlers (errors.py) as raised.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel

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
