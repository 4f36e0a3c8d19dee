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
from collections.abc import AsyncIterator

import torch
from fastapi import FastAPI

from model.inference import resolve_device

from . import __version__, interpolate, playground, sample_stream
from .batcher import Batcher
from .engine import Engine, cpu_threads
from .errors import register_exception_handlers
from .metrics import Metrics
from .middleware import BodyLimitMiddleware, RequestTrackingMiddleware
from .operations import OPERATIONS
from .registry import load_registry
from .routes import router
from .settings import Settings
from .state import Phase, ServiceState

log = logging.getLogger("service")

DESCRIPTION = """
Samples, reconstructions at any depth, latents and likelihoods from Very Deep VAEs
(openai/vdvae compatible), batched across concurrent requests.

Errors are `application/problem+json` (RFC 9457). `Accept: image/png` on /sample, /reconstruct,
/decode and /interpolate returns the PNG itself. The playground, a page that uses this API, is at `/`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """A ready-to-serve app for `settings` (defaults and VDVAE_* environment variables when None)."""
    settings = settings if settings is not None else Settings()
    metrics = Metrics(settings.max_batch_size)
    app = FastAPI(
        title="vdvae-serve",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.service = ServiceState(settings=settings, metrics=metrics)
    register_exception_handlers(app)
    app.include_router(router)
    app.include_router(sample_stream.router)
    app.include_router(interpolate.router)
    playground.install(app)
    # Added last = outermost: the request id and metrics see every answer, the 413s included.
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes, metrics=metrics)
    static_paths = frozenset(r.path for r in app.routes if "{" not in getattr(r, "path", "{"))
    app.add_middleware(RequestTrackingMiddleware, metrics=metrics, static_paths=static_paths)
    return app


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
        device = resolve_device(settings.device)
        if device.type == "cpu":
            threads = cpu_threads(settings.cpu_threads)
            torch.set_num_threads(threads)
            log.info("CPU inference with %d torch thread(s)", threads)
        state.engine = Engine(device, state.metrics)
        state.set_phase(Phase.LOADING, f"loading models from {settings.model_dir}")
        registry = await state.engine.call(
            load_registry, settings.model_dir, device, settings.amp, settings.default_model, settings.compile
        )
        state.registry = registry
        if not registry.models:
            errors = "; ".join(f"{k}: {v}" for k, v in registry.errors.items()) or "no model folders found"
            raise RuntimeError(f"no model could be loaded from {settings.model_dir.resolve()} ({errors})")
        if settings.warmup:
            state.set_phase(Phase.WARMING_UP, "warming up")
            for model in registry.models.values():
                await state.engine.warmup(model)
        for model in registry.models.values():
            for op in OPERATIONS.values():
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
        state.set_phase(Phase.READY)
        log.info(
            "ready: serving %s on %s (default model %r)",
            ", ".join(registry.models), device, registry.default_name,
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
    timeout = state.settings.shutdown_timeout_s
    await asyncio.gather(*(b.drain(timeout) for b in state.batchers.values()))
    if state.engine is not None:
        await asyncio.to_thread(state.engine.shutdown)
    log.info("stopped")
