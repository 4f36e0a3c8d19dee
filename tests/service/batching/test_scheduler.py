"""The scheduler's admissions with the real batchers and engine: callers' limits at a request's first
submission, and nothing lost or computed twice when requests of several callers and priorities
are cancelled or expire while others span passes."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter

import pytest
import torch

from service.batching.context import RequestContext
from service.batching.engine import Engine
from service.batching.items import SampleItem
from service.batching.operations import SAMPLE
from service.batching.scheduler import Scheduler
from service.errors import Cancelled, DeadlineExceeded, RateLimited, TooManyQueued
from service.http.callers import Caller, Priority
from service.metrics import Metrics

from ..conftest import metric_value


class RecordingEngine(Engine):
    """The real engine, which logs the seeds of each pass."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.seeds: list[int] = []

    def _run_live(self, model, op, items, contexts):
        outcomes = super()._run_live(model, op, items, contexts)
        self.seeds += [it.seed for it, o in zip(items, outcomes) if not isinstance(o, Exception)]
        return outcomes


def started(served_mnist, **kwargs) -> tuple[Scheduler, RecordingEngine, Metrics]:
    kwargs = {"max_batch_size": 8, "max_batch_delay_s": 0.0, "max_queue_images": 512, **kwargs}
    metrics = Metrics(kwargs["max_batch_size"])
    engine = RecordingEngine(torch.device("cpu"), metrics)
    scheduler = Scheduler(metrics, lambda: None, **kwargs)
    scheduler.start(engine, [served_mnist])
    return scheduler, engine, metrics


def ctx(caller: Caller, seconds: float = 60.0, priority: Priority = Priority.NORMAL) -> RequestContext:
    return RequestContext("t", time.monotonic() + seconds, seconds, caller=caller, priority=priority)


def items(n: int, start: int) -> list[SampleItem]:
    return [SampleItem(seed=start + i) for i in range(n)]


async def never_disconnects() -> None:
    await asyncio.Event().wait()


def test_a_caller_over_its_limits_is_refused_at_its_first_submission_only(served_mnist) -> None:
    limited = Caller("key:limited", "limited", rate=1.0, burst=8, max_queued=12)

    async def go():
        scheduler, engine, metrics = started(served_mnist)
        first = scheduler.admit()
        results = await first.run(SAMPLE, served_mnist, items(8, 0), ctx(limited), never_disconnects)
        # A request whose first images were let in (a cascade's next stage) goes into debt.
        more = await first.run(SAMPLE, served_mnist, items(4, 100), ctx(limited), never_disconnects)
        first.release()
        with pytest.raises(RateLimited) as refused:
            scheduler.admit().submit(SAMPLE, served_mnist, items(2, 200), ctx(limited))
        await scheduler.drain(5.0)
        engine.shutdown()
        return results, more, refused.value, metrics.render().decode()

    results, more, refused, text = asyncio.run(go())
    assert len(results) == 8 and len(more) == 4
    retry = int(refused.headers["Retry-After"])
    assert refused.status == 429 and 5 <= retry <= 6  # 4 owed and 2 asked, at 1 a second
    assert metric_value(text, "vae_client_images_total", client="limited") == 12
    assert metric_value(text, "vae_client_refused_images_total", client="limited", reason="rate_limited") == 2


def test_a_caller_with_its_cap_of_images_queued_waits_for_them(served_mnist) -> None:
    capped = Caller("key:capped", "capped", burst=64, max_queued=10)
    other = Caller("key:other", "other", burst=64)

    async def go():
        scheduler, engine, _ = started(served_mnist)
        first = scheduler.admit().submit(SAMPLE, served_mnist, items(8, 0), ctx(capped))
        with pytest.raises(TooManyQueued) as refused:
            scheduler.admit().submit(SAMPLE, served_mnist, items(4, 100), ctx(capped))
        others = scheduler.admit().submit(SAMPLE, served_mnist, items(8, 200), ctx(other))  # its own cap
        await asyncio.gather(first.results, others.results)
        later = scheduler.admit().submit(SAMPLE, served_mnist, items(4, 100), ctx(capped))
        await later.results
        await scheduler.drain(5.0)
        engine.shutdown()
        return refused.value, scheduler.quotas.queued(capped)

    refused, queued = asyncio.run(go())
    assert refused.status == 429 and int(refused.headers["Retry-After"]) >= 1
    assert queued == 0


def test_nothing_is_lost_or_computed_twice_when_requests_are_cancelled_or_expire(served_mnist) -> None:
    rng = random.Random(7)
    callers = [Caller(f"key:{name}", name, weight=w, burst=64) for name, w in (("a", 1), ("b", 2), ("c", 1))]

    async def go():
        scheduler, engine, metrics = started(served_mnist, max_batch_size=6)
        requests = []  # (seeds, submission, fate)
        seed = 0
        for _ in range(40):
            n = rng.choice([1, 1, 2, 5, 13])
            fate = rng.choice(["wait", "wait", "wait", "cancel", "expire"])
            c = ctx(
                rng.choice(callers),
                seconds=0.15 if fate == "expire" else 60.0,
                priority=rng.choice(list(Priority)),
            )
            submission = scheduler.admit().submit(SAMPLE, served_mnist, items(n, seed), c)
            requests.append((list(range(seed, seed + n)), submission, fate))
            seed += 100
            if fate == "cancel" and rng.random() < 0.5:
                c.cancelled = True  # its client has gone: dropped when its pass forms
            await asyncio.sleep(rng.choice([0, 0, 0.01]))
        for _, submission, fate in requests:
            if fate == "cancel":
                submission.close()
        outcomes = []
        for seeds, submission, fate in requests:
            try:
                outcomes.append((seeds, fate, await asyncio.wait_for(submission.results, 60)))
            except (asyncio.CancelledError, Cancelled, DeadlineExceeded) as e:
                outcomes.append((seeds, fate, e))
        await scheduler.drain(5.0)
        engine.shutdown()
        return outcomes, engine.seeds, scheduler, metrics.render().decode()

    outcomes, computed, scheduler, text = asyncio.run(go())
    counts = Counter(computed)
    assert all(k == 1 for k in counts.values()), "an image was computed twice"
    for seeds, fate, outcome in outcomes:
        if fate == "wait":  # nothing lost: every image of every request still waiting
            assert isinstance(outcome, list) and len(outcome) == len(seeds)
            assert all(counts[s] == 1 for s in seeds)
        elif isinstance(outcome, list):  # it finished before it was cancelled or expired
            assert all(counts[s] == 1 for s in seeds)
    assert any(not isinstance(o, list) for _, fate, o in outcomes if fate != "wait")
    assert all(scheduler.quotas.queued(c) == 0 for c in callers)
    assert metric_value(text, "vae_client_queued_images") == 0
    assert metric_value(text, "vae_queue_depth", operation="sample") == 0
