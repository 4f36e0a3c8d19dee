"""GET /v1/models and /v1/models/{name}: what each served model or cascade is, its sampling defaults,
and the limits a client sizes its requests by; readable by the `openai` SDKs too (their errors are
OpenAI-shaped, as every error under /v1/)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ...registry import ServedCascade, ServedModel
from ...state import ServiceState
from ..bodies import openai_error_responses
from ..routing import service_state
from .bodies import ModelInfo, ModelList, ServingLimits

router = APIRouter()


def model_info(svc: ServiceState, model: ServedModel | ServedCascade) -> ModelInfo:
    s = svc.settings
    limits = ServingLimits(
        max_batch_size=s.max_batch_size,
        max_images_per_request=s.max_images_per_request,
        max_queue_images=s.max_queue_images,
        request_timeout_s=s.request_timeout_s,
    )
    return ModelInfo(default=model.name == svc.registry.default_name, limits=limits, **model.info())


@router.get("/v1/models", response_model=ModelList, tags=["models"], summary="The served models")
async def list_models(request: Request) -> ModelList:
    svc = service_state(request)
    served = [*svc.registry.models.values(), *svc.registry.cascades.values()]
    return ModelList(data=[model_info(svc, m) for m in served])


@router.get(
    "/v1/models/{name}",
    response_model=ModelInfo,
    responses=openai_error_responses(404),
    tags=["models"],
    summary="One model: image size, channels, layers, parameters, classes, output head, provenance",
)
async def get_model(name: str, request: Request) -> ModelInfo:
    svc = service_state(request)
    return model_info(svc, svc.registry.get_any(name))
