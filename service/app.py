"""The app factory and its lifespan.

`create_app(settings)` builds a FastAPI app whose state (`app.state.service`) holds everything the
routes need. Its lifespan starts the models in the background, so /health/live answers at once and
/health/ready turns 200 only once every model is loaded and warmed up; on shutdown it stops taking
work, drains every batcher within shutdown_timeout_s, and stops the device thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterable, Iterator

import torch
from fastapi import FastAPI
from starlette.routing import BaseRoute

from model.inference import keep_freed_memory_in_heap, resolve_device

from . import __version__, interpolate, playground, sample_stream, upscale
from .access import add_access_control
from .batcher import Batcher
from .body_limits import endpoint_body_limits
from .devicecheck import device_problem
from .engine import Engine, cpu_threads
from .errors import register_exception_handlers
from .memory import ByteBudget, HeapTrimmer, freeze_startup_objects
from .metrics import Metrics
from .middleware import BodyGuardMiddleware, RequestTrackingMiddleware
from .model_route import DirectModelRoutes, direct_routes, leaf_routes
from .openapi import install_openapi
from .operations import OPERATIONS
from .parsing import Parser
from .registry import load_registry
from .routes import metrics_router, router
from .settings import Settings
from .state import Phase, ServiceState

log = logging.getLogger("service")

DESCRIPTION = """
Samples, reconstructions at any depth, latents and likelihoods from Very Deep VAEs
(openai/vdvae compatible), batched across concurrent requests.

Errors are `application/problem+json` (RFC 9457). `Accept: image/png` on /sample, /reconstruct,
/decode, /interpolate and /upscale returns the PNG itself. The playground, a page that uses this
API, is at `/`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """A ready-to-serve app for `settings` (defaults and VDVAE_* environment variables when None)."""
    settings = settings if settings is not None else Settings()
    metrics = Metrics(settings.max_batch_size)
    docs = settings.docs_access != "closed"
    app = FastAPI(
        title="vdvae-serve",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    state = ServiceState(
        settings=settings,
        metrics=metrics,
        parser=Parser(),
        body_budget=ByteBudget(settings.max_body_bytes_in_flight),
        trimmer=HeapTrimmer(settings.memory_trim_after_s),
    )
    app.state.service = state
    register_exception_handlers(app)
    app.include_router(router)
    app.include_router(sample_stream.router)
    app.include_router(interpolate.router)
    app.include_router(upscale.router)
    playground.install(app)
    if settings.metrics_access != "closed":
        app.include_router(metrics_router)
    # Added last = outermost. Inside out: the model routes' direct dispatch, body limits, then the
    # key check (before any body is read), CORS (preflights carry no key), and the request id and
    # metrics around every answer.
    app.add_middleware(DirectModelRoutes, routes=direct_routes(app.routes), handlers=app.exception_handlers)
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
    install_openapi(app, state, keys_required=bool(keys))
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
        state.engine = Engine(device, state.metrics)
        state.set_phase(Phase.LOADING, f"loading models from {settings.model_dir}")
        registry = await state.engine.call(
            load_registry, settings.model_dir, device, settings.amp, settings.default_model, settings.compile
        )
        state.registry = registry
        if settings.endpoint_body_limits:
            state.endpoint_limits.update(endpoint_body_limits(registry.served(), settings))
        if not registry.models and not registry.cascades:
            errors = "; ".join(f"{k}: {v}" for k, v in registry.errors.items()) or "no model folders found"
            raise RuntimeError(f"no model could be loaded from the model folder ({errors})")
        if settings.warmup:
            state.set_phase(Phase.WARMING_UP, "warming up")
            for model in registry.served():
                await state.engine.warmup(model)
        for model in registry.served():
            for op in (op for op in OPERATIONS.values() if op.serves(model.vae)):
                batcher = Batcher(
                    model,
                    op,
                    state.engine,
                    state.metrics,
                    max_batch_size=settings.max_batch_size,
                    max_batch_delay_s=settings.max_batch_delay_ms / 1000.0,
                    max_queue_images=settings.max_queue_images,
                    inflight=state.inflight if settings.batch_early_close else None,
                )
                batcher.start()
                state.batchers[(model.name, op.name)] = batcher
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


async def stop(state: ServiceState, starting: asyncio.Task) -> None:
    """Stop taking work, let the batchers finish (bounded), and release the device thread."""
    state.start_draining()
    if not starting.done():
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
    # What is left of the drain (the server may have used it all), and the time the last answers get.
    timeout = max(0.0, state.drain_deadline - time.monotonic()) + state.settings.shutdown_close_s
    await asyncio.gather(*(b.drain(timeout) for b in state.batchers.values()))
    state.trimmer.cancel()
    state.parser.shutdown()
    if state.engine is not None:
        await asyncio.to_thread(state.engine.shutdown)
    log.info("stopped")
