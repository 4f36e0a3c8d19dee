"""The service's own endpoints: GET /health/live and /health/ready (the probes), /metrics
(Prometheus; its own router, left out when metrics_access is closed) and /problems/{slug} (the page
behind each problem's `type`)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from ...errors import PROBLEM_TYPES, NotReady, ShuttingDown, problem_response
from ...state import Phase
from ..bodies import problem_responses
from ..routing import service_state
from .bodies import Health

router = APIRouter()
metrics_router = APIRouter()


@router.get("/health/live", response_model=Health, tags=["health"], summary="200 while the process is up")
async def live() -> Health:
    return Health(status="live")


@router.get(
    "/health/ready",
    response_model=Health,
    responses=problem_responses(503),
    tags=["health"],
    summary="200 once every model is loaded and warmed up; 503 before that and while draining",
)
async def ready(request: Request) -> Health | JSONResponse:
    svc = service_state(request)
    if svc.phase is Phase.READY:
        return Health(
            status="ready",
            models=sorted([*svc.registry.models, *svc.registry.cascades]),
            model_errors=svc.registry.errors,
        )
    error = (
        ShuttingDown(svc.problem)
        if svc.phase is Phase.DRAINING
        else NotReady(svc.problem, headers={"Retry-After": "5"})
    )
    return problem_response(request, error)  # not counted as a failed request: probes poll this


@router.get("/problems/{slug}", include_in_schema=False)
async def problem_type(slug: str) -> Response:
    """The page behind each problem `type` URI."""
    cls = PROBLEM_TYPES.get(slug)
    if cls is None:
        return JSONResponse({"detail": f"no problem type {slug!r}"}, status_code=404)
    return PlainTextResponse(f"{cls.title} (HTTP {cls.status})\n\n{cls.description}\n")


@metrics_router.get(
    "/metrics", tags=["health"], summary="Prometheus metrics", response_class=PlainTextResponse
)
async def metrics(request: Request) -> Response:
    return Response(service_state(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)
