"""The app factory and its lifespan.

`create_app(settings)` builds a FastAPI app whose state (`app.state.service`) holds everything the
routes need, includes the API's routers (one per endpoint family, service/api/) and wraps them in
the HTTP layer's middleware (service/http/). Its lifespan starts the models in the background, so
/health/live answers at once and /health/ready turns 200 only once every model is loaded and warmed
up; on shutdown it stops taking work, drains every batcher within shutdown_timeout_s, and stops the
device thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Iterable, Iterator

import torch
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.routing import BaseRoute

from model.graphs import power_of_two_buckets
from model.inference import InferenceForm, keep_freed_memory_in_heap, resolve_device
from model.noise import set_draw_threads

from . import __version__
from .api.health import routes as health
from .api.images import routes as images
from .api.images.bodies import ReconstructRequest, SampleRequest, UpscaleRequest
from .api.inference_protocol import routes as inference_protocol
from .api.inference_protocol.bodies import InferenceRequest
from .api.inference_protocol.inference import inference_body_limits
from .api.latents import routes as latents
from .api.latents.bodies import DecodeRequest, EncodeRequest
from .api.models import routes as models
from .api.openai import routes as openai
from .api.openai.bodies import ImageGenerationRequest
from .api.openapi import install_openapi
from .api.playground import routes as playground
from .api.routing import DirectDispatch, direct_routes, leaf_routes
from .batching.engine import Engine, cpu_threads
from .devicecheck import device_problem
from .errors import register_exception_handlers
from .http.access import DOCS_ASSETS, add_access_control
from .http.memory import ByteBudget, HeapTrimmer
from .http.middleware import BodyGuardMiddleware, RequestTrackingMiddleware
from .inputs.body_limits import endpoint_body_limits
from .inputs.parsing import Parser
from .metrics import Metrics
from .registry import load_registry
from .settings import Settings
from .state import Phase, ServiceState

log = logging.getLogger("service")

# The API's routers, one per endpoint family, in the order /docs lists them; /metrics comes last,
# left out when metrics_access is closed.
ROUTERS = (
    images.router,
    latents.router,
    models.router,
    openai.router,
    inference_protocol.router,
    inference_protocol.infer_router,
    health.router,
)
# The request bodies that the model endpoints' requestBody entries name by reference.
REQUEST_BODIES = (
    SampleRequest, ReconstructRequest, UpscaleRequest, EncodeRequest, DecodeRequest, ImageGenerationRequest,
    InferenceRequest,
)  # fmt: skip

DESCRIPTION = """
Samples, reconstructions at any depth, latents and likelihoods from Very Deep VAEs
(openai/vdvae compatible), batched across concurrent requests.

Errors are `application/problem+json` (RFC 9457), except under /v1/ (OpenAI's error object, which
its SDKs read) and /v2 (the Open Inference Protocol's `{"error"}`). `Accept: image/png` on /sample,
/reconstruct, /decode, /interpolate and /upscale returns the PNG itself. The playground, a page that
uses this API, is at `/`.

Also spoken: OpenAI's Images API (`POST /v1/images/generations`, with streamed partial images) and
the Open Inference Protocol (KServe v2: `/v2/...`), so their clients work unchanged.

A 504 (deadline exceeded) is the answer to a request whose deadline passed before it was computed:
the service's request_timeout_s, or a shorter `timeout_ms` (`parameters.timeout` under /v2). A
deadline of a few milliseconds gets it by design; it is not a fault of the service.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """A ready-to-serve app for `settings` (defaults and VDVAE_* environment variables when None)."""
    settings = settings if settings is not None else Settings()
    metrics = Metrics(settings.max_batch_size)
    about = {"title": "vdvae-serve", "version": __version__, "description": DESCRIPTION, "lifespan": lifespan}
    if settings.docs_access != "closed":
        # /docs and /redoc load Swagger UI and ReDoc from the package, not from a CDN: they work on
        # an offline host. No validator: Swagger UI would send the schema to validator.swagger.io.
        app = FastAPIOffline(**about, static_url=DOCS_ASSETS, swagger_ui_parameters={"validatorUrl": None})
    else:
        app = FastAPI(**about, docs_url=None, redoc_url=None, openapi_url=None)
    state = ServiceState(
        settings=settings,
        metrics=metrics,
        parser=Parser(),
        body_budget=ByteBudget(settings.max_body_bytes_in_flight),
        trimmer=HeapTrimmer(settings.memory_trim_after_s),
    )
    app.state.service = state
    register_exception_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    playground.install(app)
    if settings.metrics_access != "closed":
        app.include_router(health.metrics_router)
    # Added last = outermost. Inside out: the model routes' direct dispatch, body limits, then the
    # key check (before any body is read), CORS (preflights carry no key), and the request id and
    # metrics around every answer.
    if settings.direct_dispatch:
        app.add_middleware(DirectDispatch, routes=direct_routes(app.routes), handlers=app.exception_handlers)
    app.add_middleware(
        BodyGuardMiddleware,
        settings=settings,
        metrics=metrics,
        budget=state.body_budget,
        trimmer=state.trimmer,
        endpoint_limits=state.endpoint_limits,
    )
    keys = add_access_control(app, settings, metrics)
    static_paths = frozenset(p for p in route_paths(app.routes) if "{" not in p)
    app.add_middleware(RequestTrackingMiddleware, metrics=metrics, static_paths=static_paths)
    install_openapi(
        app, state, bool(keys), request_bodies=REQUEST_BODIES, family_bounds=[inference_protocol.write_bounds]
    )
    return app


def route_paths(routes: Iterable[BaseRoute]) -> Iterator[str]:
    """Every route's path template, in included routers too."""
    for route in leaf_routes(routes):
        if isinstance(getattr(route, "path", None), str):
            yield route.path


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    state: ServiceState = app.state.service
    starting = asyncio.create_task(start_models(state), name="start-models")
    try:
        yield
    finally:
        await stop(state, starting)


async def start_models(state: ServiceState) -> None:
    """Load every model, warm each up, start one batcher per model and operation, then turn ready."""
    settings = state.settings
    try:
        if problem := device_problem(settings.device):
            raise RuntimeError(problem)
        device = resolve_device(settings.device)
        if device.type == "cpu":
            threads = cpu_threads(settings.cpu_threads)
            torch.set_num_threads(threads)
            log.info("CPU inference with %d torch thread(s)", threads)
            keep_freed_memory_in_heap()  # before the engine's thread starts: it keeps its arena
        set_draw_threads(settings.draw_threads)
        state.engine = Engine(device, state.metrics)
        state.set_phase(Phase.LOADING, f"loading models from {settings.model_dir}")
        form = InferenceForm(
            amp=settings.amp,
            compile=settings.compile,
            cuda_graphs=settings.cuda_graphs,
            buckets=tuple(power_of_two_buckets(settings.max_batch_size)),
        )
        registry = await state.engine.call(
            load_registry, settings.model_dir, device, form, settings.default_model
        )
        state.registry = registry
        if settings.endpoint_body_limits:
            state.endpoint_limits.update(endpoint_body_limits(registry.served(), settings))
            state.endpoint_limits.update(inference_body_limits(registry, settings))
        if not registry.models and not registry.cascades:
            errors = "; ".join(f"{k}: {v}" for k, v in registry.errors.items()) or "no model folders found"
            raise RuntimeError(f"no model could be loaded from the model folder ({errors})")
        if settings.warmup:
            state.set_phase(Phase.WARMING_UP, "warming up")
            for model in registry.served():
                await state.engine.warmup(model)
        state.scheduler.start(state.engine, registry.served())
        if state.phase is Phase.DRAINING:  # a shutdown began while we were starting
            return
        log.info("%d objects of startup kept out of garbage collection", freeze_startup_objects())
        state.set_phase(Phase.READY)
        log.info(
            "ready: serving %s on %s (default model %r)",
            ", ".join([*registry.models, *registry.cascades]), device, registry.default_name,
        )  # fmt: skip
    except asyncio.CancelledError:
        raise
    except Exception as e:
        log.error("startup failed: %s", e, exc_info=not isinstance(e, RuntimeError))
        state.set_phase(Phase.FAILED, f"startup failed: {e}")


def freeze_startup_objects() -> int:
    """Collect startup's garbage, then move every object left (modules, the app, the models: some
    340,000 for the bundled model) out of the collector's reach; returns how many there were.

    They live as long as the process, yet each full collection would walk them all, and under load
    a full collection comes every few seconds and holds the event loop for as long as that walk
    takes. Objects made later are collected as before.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


async def stop(state: ServiceState, starting: asyncio.Task) -> None:
    """Stop taking work, let the batchers finish (bounded), and release the device thread."""
    state.start_draining()
    if not starting.done():
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
    # What is left of the drain (the server may have used it all), and the time the last answers get.
    timeout = max(0.0, state.drain_deadline - time.monotonic()) + state.settings.shutdown_close_s
    await state.scheduler.drain(timeout)
    state.trimmer.cancel()
    state.parser.shutdown()
    if state.engine is not None:
        await asyncio.to_thread(state.engine.shutdown)
    log.info("stopped")
