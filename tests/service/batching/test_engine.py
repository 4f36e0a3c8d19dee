"""The engine: one bad item fails alone, out-of-memory splits the batch, and nothing expired or
cancelled reaches the model."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import numpy as np
import pytest
import torch

from service.batching import engine as engine_module
from service.batching.context import RequestContext
from service.batching.engine import TORCH_DEFAULT_THREADS, Engine, cpu_threads
from service.batching.items import SampleItem
from service.batching.operations import ENCODE, OPERATIONS, SAMPLE, Operation, run_sample
from service.errors import Cancelled, DeadlineExceeded, InternalError, InvalidInput
from service.metrics import Metrics
from tests.marks import cuda_only

from ..conftest import metric_value


def live_context(seconds: float = 60.0) -> RequestContext:
    return RequestContext(request_id="t", deadline=time.monotonic() + seconds, timeout_s=seconds)


def run_batch(engine: Engine, model, op: Operation, items, contexts=None):
    contexts = contexts or [live_context() for _ in items]

    async def go():
        try:
            return await engine.run_batch(model, op, items, contexts)
        finally:
            engine.shutdown()

    return asyncio.run(go())


def new_engine() -> Engine:
    return Engine(torch.device("cpu"), Metrics(max_batch_size=32))


def test_a_bad_item_fails_alone_and_the_others_match_their_solo_results(served_mnist) -> None:
    items = [SampleItem(seed=i, label=i % 10) for i in range(7)]
    items[4] = SampleItem(seed=4, label=99)  # out of range: the model raises ValueError for the batch
    engine = new_engine()
    outcomes = run_batch(engine, served_mnist, SAMPLE, items)
    assert isinstance(outcomes[4], InvalidInput) and "out of range" in outcomes[4].detail
    for i in (0, 1, 2, 3, 5, 6):
        alone = run_sample(served_mnist.vae, [items[i]])[0]
        assert np.array_equal(outcomes[i], alone), i
    # Only the passes that succeeded count, and all six good images were produced.
    text = engine.metrics.render().decode()
    assert metric_value(text, "vae_images_total", model="mnist", operation="sample") == 6


def test_an_unexpected_error_is_a_500_for_that_item_only(served_mnist) -> None:
    items = [SampleItem(seed=0), SampleItem(seed=None), SampleItem(seed=2)]  # None: a TypeError inside
    outcomes = run_batch(new_engine(), served_mnist, SAMPLE, items)
    assert isinstance(outcomes[1], InternalError) and outcomes[1].status == 500
    assert "Traceback" not in outcomes[1].detail
    assert isinstance(outcomes[0], np.ndarray) and isinstance(outcomes[2], np.ndarray)


def test_out_of_memory_splits_the_batch_and_retries(served_mnist) -> None:
    sizes: list[int] = []

    def run_small_only(vae, items):
        sizes.append(len(items))
        if len(items) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return run_sample(vae, items)

    op = Operation("sample", run_small_only, SAMPLE.warmup_items)
    items = [SampleItem(seed=i) for i in range(8)]
    outcomes = run_batch(new_engine(), served_mnist, op, items)
    assert sizes[0] == 8 and max(sizes[1:]) <= 4
    whole = run_sample(served_mnist.vae, items)
    assert all(np.array_equal(a, b) for a, b in zip(outcomes, whole))


def test_expired_and_cancelled_items_are_not_computed(served_mnist) -> None:
    seen: list[int] = []

    def counting(vae, items):
        seen.extend(it.seed for it in items)
        return run_sample(vae, items)

    op = Operation("sample", counting, SAMPLE.warmup_items)
    expired = RequestContext(request_id="e", deadline=time.monotonic() - 0.001, timeout_s=1.0)
    cancelled = live_context()
    cancelled.cancelled = True
    items = [SampleItem(seed=0), SampleItem(seed=1), SampleItem(seed=2)]
    outcomes = run_batch(new_engine(), served_mnist, op, items, [live_context(), expired, cancelled])
    assert isinstance(outcomes[0], np.ndarray)
    assert isinstance(outcomes[1], DeadlineExceeded) and outcomes[1].status == 504
    assert isinstance(outcomes[2], Cancelled)
    assert seen == [0]


def test_warmup_runs_every_operation_the_model_serves(served_mnist, monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[tuple[str, int]] = []

    def recording(op: Operation) -> Operation:
        def run(vae, items):
            results = op.run(vae, items)
            ran.append((op.name, len(results)))
            return results

        return dataclasses.replace(op, run=run)

    monkeypatch.setattr(engine_module, "OPERATIONS", tuple(recording(op) for op in OPERATIONS))
    engine = new_engine()

    async def go():
        try:
            await engine.warmup(served_mnist)
        finally:
            engine.shutdown()

    asyncio.run(go())  # raises if an operation failed
    served = [op.name for op in OPERATIONS if op.serves(served_mnist.vae)]
    assert [name for name, _ in ran] == served and "upscale" not in served  # not a super-resolution model
    assert all(size >= 2 for _, size in ran)  # a batch, not a single image


def test_warmup_failure_names_the_operation(served_mnist, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(vae, items):
        raise ValueError("boom")

    ops = tuple(Operation("encode", broken, op.warmup_items) if op is ENCODE else op for op in OPERATIONS)
    monkeypatch.setattr(engine_module, "OPERATIONS", ops)
    engine = new_engine()
    try:
        with pytest.raises(RuntimeError, match="encode"):
            asyncio.run(engine.warmup(served_mnist))
    finally:
        engine.shutdown()


@cuda_only
def test_cuda_bf16_batches_match_their_solo_results(model_dir) -> None:
    from model.checkpoint import load_model
    from service.registry import ServedModel

    vae = load_model(model_dir / "mnist", device="cuda")
    vae.amp_dtype = torch.bfloat16
    model = ServedModel("mnist", vae)
    engine = Engine(torch.device("cuda"), Metrics(32))
    items = [SampleItem(seed=i, label=i % 10) for i in range(16)]
    outcomes = run_batch(engine, model, SAMPLE, items)
    assert all(isinstance(o, np.ndarray) and o.shape == (32, 32, 1) for o in outcomes)
    assert np.array_equal(outcomes[3], run_sample(vae, [items[3]])[0])


def test_cpu_threads_leave_a_core_to_the_event_loop() -> None:
    assert cpu_threads(3) == 3
    assert cpu_threads(0) == max(1, TORCH_DEFAULT_THREADS - 1)
