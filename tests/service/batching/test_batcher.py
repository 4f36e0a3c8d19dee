"""The batcher: windows, batch sizes counted in images, the queue bound, drops, and draining."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
import torch

from service.batching.batcher import Batcher, InFlight
from service.batching.context import RequestContext
from service.batching.engine import Engine
from service.batching.items import SampleItem
from service.batching.operations import SAMPLE
from service.errors import Cancelled, DeadlineExceeded, QueueFull, ShuttingDown
from service.http.callers import UNKNOWN, Caller, Priority
from service.metrics import Metrics

from ..conftest import metric_value


def ctx(
    seconds: float = 60.0, caller: Caller = UNKNOWN, priority: Priority = Priority.NORMAL
) -> RequestContext:
    return RequestContext(
        request_id="t",
        deadline=time.monotonic() + seconds,
        timeout_s=seconds,
        caller=caller,
        priority=priority,
    )


def items(n: int, start: int = 0) -> list[SampleItem]:
    return [SampleItem(seed=start + i) for i in range(n)]


class GatedEngine(Engine):
    """The real engine, whose first pass waits for `gate` and which logs how many images each pass
    holds, and their seeds."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.gate = threading.Event()
        self.passes: list[int] = []
        self.seeds: list[list[int]] = []

    def _run_live(self, model, op, items, contexts):
        if not self.passes:
            self.gate.wait(30)
        self.passes.append(len(items))
        self.seeds.append([it.seed for it in items])
        return super()._run_live(model, op, items, contexts)


class Harness:
    """A started batcher over the real engine and model, and what it recorded."""

    def __init__(self, model, engine: type[Engine] = Engine, **kwargs) -> None:
        kwargs = {"max_batch_size": 8, "max_batch_delay_s": 0.05, "max_queue_images": 64, **kwargs}
        self.metrics = Metrics(kwargs["max_batch_size"])
        self.engine = engine(torch.device("cpu"), self.metrics)
        self.batcher = Batcher(model, SAMPLE, self.engine, self.metrics, **kwargs)
        self.batcher.start()

    def batch_sizes(self) -> tuple[float, float]:
        text = self.metrics.render().decode()
        return (
            metric_value(text, "vae_batch_size_count", operation="sample"),
            metric_value(text, "vae_batch_size_sum", operation="sample"),
        )

    async def close(self) -> None:
        await self.batcher.drain(5.0)
        self.engine.shutdown()


def test_a_full_batch_closes_before_the_window(served_mnist) -> None:
    async def go():
        h = Harness(served_mnist, max_batch_size=5, max_batch_delay_s=30.0)
        t0 = time.monotonic()
        results = await asyncio.gather(*h.batcher.submit(items(5), ctx()))
        elapsed = time.monotonic() - t0
        await h.close()
        return results, elapsed, h.batch_sizes()

    results, elapsed, (passes, images) = asyncio.run(go())
    assert len(results) == 5 and elapsed < 10
    assert (passes, images) == (1, 5)


def test_the_window_opens_at_the_first_arrival(served_mnist) -> None:
    async def go():
        h = Harness(served_mnist, max_batch_size=8, max_batch_delay_s=0.4)
        t0 = time.monotonic()
        first = h.batcher.submit(items(1), ctx())
        await asyncio.sleep(0.2)
        second = h.batcher.submit(items(2, start=10), ctx())
        await asyncio.gather(*first, *second)
        elapsed = time.monotonic() - t0
        await h.close()
        return elapsed, h.batch_sizes()

    elapsed, (passes, images) = asyncio.run(go())
    assert (passes, images) == (1, 3)  # one pass for both requests
    assert 0.4 <= elapsed < 0.6 + 1.0  # closed by the first arrival's window, not 0.2 s later's


def test_the_window_closes_when_no_other_request_can_join(served_mnist) -> None:
    inflight = InFlight()

    async def go():
        h = Harness(served_mnist, max_batch_size=8, max_batch_delay_s=30.0, inflight=inflight)
        t0 = time.monotonic()
        # Alone (the request in flight is the one queued): no 30 s window.
        inflight.requests, inflight.queued = 1, 1
        await asyncio.gather(*h.batcher.submit(items(1), ctx()))
        alone = time.monotonic() - t0
        # Another request is being read while the first waits: the window holds for it.
        inflight.requests, inflight.queued = 2, 1
        first = h.batcher.submit(items(1, start=1), ctx())
        await asyncio.sleep(0.3)
        assert not first[0].done()
        inflight.queued = 2  # the last one in: the batch goes
        second = h.batcher.submit(items(2, start=2), ctx())
        await asyncio.gather(*first, *second)
        together = time.monotonic() - t0 - alone
        await h.close()
        return alone, together, h.batch_sizes()

    alone, together, (passes, images) = asyncio.run(go())
    assert alone < 10 and together < 10
    assert (passes, images) == (2, 4)  # the lone image, then the two requests in one pass


def test_a_request_larger_than_a_batch_is_split_over_passes(served_mnist) -> None:
    async def go():
        h = Harness(served_mnist, max_batch_size=2, max_batch_delay_s=0.0)
        results = await asyncio.gather(*h.batcher.submit(items(5), ctx()))
        await h.close()
        return results, h.batch_sizes()

    results, (passes, images) = asyncio.run(go())
    assert len(results) == 5 and (passes, images) == (3, 5)


def test_the_queue_is_bounded_in_images_with_one_pass_of_room_for_small_requests(served_mnist) -> None:
    async def go():
        h = Harness(served_mnist, max_batch_size=4, max_batch_delay_s=0.3, max_queue_images=6)
        queued = h.batcher.submit(items(3), ctx())
        with pytest.raises(QueueFull) as full:
            h.batcher.submit(items(4), ctx())  # 3 + 4 > 6: all or nothing
        small = h.batcher.submit(items(2, start=10), ctx())  # 3 + 2 fits
        with pytest.raises(QueueFull):
            h.batcher.submit(items(2, start=20), ctx())  # 5 + 2 > 6: no request larger than a pass
        await asyncio.gather(*queued, *small)
        # While a request larger than a pass is queued, one that a pass holds whole joins the next
        # round however full the queue: up to one pass (4 images) beyond the bound.
        large = h.batcher.submit(items(6, start=30), ctx())
        more = h.batcher.submit(items(3, start=40), ctx())  # 6 + 3 <= 6 + 4
        with pytest.raises(QueueFull):
            h.batcher.submit(items(2, start=50), ctx())  # 9 + 2 > 6 + 4
        last = h.batcher.submit(items(1, start=60), ctx())  # 9 + 1 fits
        await asyncio.gather(*large, *more, *last)
        await h.close()
        return full.value

    error = asyncio.run(go())
    assert error.status == 503 and int(error.headers["Retry-After"]) >= 1


def test_expired_and_cancelled_requests_are_dropped_when_the_batch_forms(served_mnist) -> None:
    async def go():
        h = Harness(served_mnist, max_batch_size=8, max_batch_delay_s=0.3)
        short, gone, fine = ctx(0.1), ctx(), ctx()
        f_short = h.batcher.submit(items(1), short)
        f_gone = h.batcher.submit(items(1, start=5), gone)
        f_fine = h.batcher.submit(items(1, start=9), fine)
        gone.cancelled = True
        outcomes = await asyncio.gather(*f_short, *f_gone, *f_fine, return_exceptions=True)
        await h.close()
        return outcomes, h.batch_sizes()

    outcomes, (passes, images) = asyncio.run(go())
    assert isinstance(outcomes[0], DeadlineExceeded)
    assert isinstance(outcomes[1], Cancelled)
    assert outcomes[2].shape == (32, 32, 1)
    assert (passes, images) == (1, 1)  # only the live item was computed


def test_drain_finishes_queued_work_then_refuses_new_work(served_mnist) -> None:
    async def go():
        h = Harness(served_mnist, max_batch_size=8, max_batch_delay_s=10.0)
        queued = h.batcher.submit(items(3), ctx())
        t0 = time.monotonic()
        await h.batcher.drain(5.0)  # does not wait for the 10 s window
        results = await asyncio.gather(*queued)
        with pytest.raises(ShuttingDown):
            h.batcher.submit(items(1), ctx())
        h.engine.shutdown()
        return results, time.monotonic() - t0

    results, elapsed = asyncio.run(go())
    assert len(results) == 3 and elapsed < 5


def test_a_batch_that_is_not_full_gathers_until_the_engine_is_free(served_mnist) -> None:
    inflight = InFlight(requests=2, queued=1)

    async def go():
        h = Harness(
            served_mnist, engine=GatedEngine, max_batch_size=8, max_batch_delay_s=0.05, inflight=inflight
        )
        first = h.batcher.submit(items(8), ctx())  # full: its pass waits at the gate
        inflight.queued = 2  # no other request in the service could join the second one ...
        second = h.batcher.submit(items(2, start=8), ctx())
        await asyncio.sleep(0.3)  # ... and its window is long past, but the engine is busy
        inflight.requests, inflight.queued = 3, 3  # a client comes back (in the service: from the pass)
        third = h.batcher.submit(items(2, start=10), ctx())
        await asyncio.sleep(0.1)
        h.engine.gate.set()
        await asyncio.gather(*first, *second, *third)
        await h.close()
        return h.engine.passes

    passes = asyncio.run(go())
    assert passes == [8, 4]  # the two later requests shared a pass


# ---- the fair share ---------------------------------------------------------------------------


def test_a_one_image_request_behind_large_ones_joins_the_next_pass(served_mnist) -> None:
    async def go():
        h = Harness(
            served_mnist, engine=GatedEngine, max_batch_size=8, max_batch_delay_s=0.0, max_queue_images=128
        )
        first = h.batcher.submit(items(40), ctx())  # its first pass waits at the gate
        await asyncio.sleep(0.05)
        second = h.batcher.submit(items(40, start=100), ctx())
        small = h.batcher.submit(items(1, start=1000), ctx())  # 72 images queued ahead of it
        h.engine.gate.set()
        results = await asyncio.gather(*first, *second, *small)
        await h.close()
        return results, h.engine.seeds

    results, seeds = asyncio.run(go())
    assert len(results) == 81
    assert seeds[0] == list(range(8))
    assert 1000 in seeds[1]  # first come, first served, it would have waited for 9 more passes
    for p in seeds[1:5]:  # while both large requests are queued, both progress in every pass
        assert any(s < 100 for s in p) and any(100 <= s < 1000 for s in p)


def test_a_request_that_spans_passes_gets_its_images_in_order(served_mnist) -> None:
    async def go():
        h = Harness(served_mnist, engine=GatedEngine, max_batch_size=3, max_batch_delay_s=0.0)
        blocker = h.batcher.submit(items(3, start=500), ctx())
        await asyncio.sleep(0.05)
        spanning = h.batcher.submit(items(7, start=10), ctx())
        others = [h.batcher.submit(items(2, start=100 + 10 * i), ctx()) for i in range(3)]
        h.engine.gate.set()
        results = await asyncio.gather(*spanning)
        await asyncio.gather(*blocker, *(f for o in others for f in o))
        reference = await h.engine.run_batch(
            served_mnist, SAMPLE, items(7, start=10), [ctx()] * 7
        )  # the same images in one pass of their own
        await h.close()
        return results, reference, h.engine.seeds

    results, reference, seeds = asyncio.run(go())
    spread = [i for i, p in enumerate(seeds) if any(10 <= s < 17 for s in p)]
    assert len(spread) >= 4  # interleaved with the other requests, over several passes
    assert all(np.array_equal(a, b) for a, b in zip(results, reference, strict=True))


def test_weights_share_the_passes_between_callers(served_mnist) -> None:
    heavy = Caller("key:heavy", "heavy", weight=3.0)
    light = Caller("key:light", "light", weight=1.0)

    async def go():
        h = Harness(
            served_mnist, engine=GatedEngine, max_batch_size=8, max_batch_delay_s=0.0, max_queue_images=128
        )
        blocker = h.batcher.submit(items(8, start=900), ctx())
        await asyncio.sleep(0.05)
        queued = []
        for i in range(2):  # each caller keeps two requests queued
            queued += h.batcher.submit(items(24, start=100 * i), ctx(caller=heavy))
            queued += h.batcher.submit(items(24, start=1000 + 100 * i), ctx(caller=light))
        h.engine.gate.set()
        await asyncio.gather(*blocker, *queued)
        await h.close()
        return h.engine.seeds

    seeds = asyncio.run(go())
    for p in seeds[1:5]:  # both callers have plenty queued: 6 of heavy's images to 2 of light's
        assert sum(s < 900 for s in p) == 6 and sum(s >= 1000 for s in p) == 2


def test_priorities_order_the_passes(served_mnist) -> None:
    async def go():
        h = Harness(served_mnist, engine=GatedEngine, max_batch_size=4, max_batch_delay_s=0.0)
        blocker = h.batcher.submit(items(4, start=900), ctx())
        await asyncio.sleep(0.05)
        low = h.batcher.submit(items(4, start=0), ctx(priority=Priority.LOW))
        normal = h.batcher.submit(items(6, start=100), ctx())
        high = h.batcher.submit(items(2, start=200), ctx(priority=Priority.HIGH))
        h.engine.gate.set()
        await asyncio.gather(*blocker, *low, *normal, *high)
        await h.close()
        return h.engine.seeds

    seeds = asyncio.run(go())
    assert seeds[1:] == [[200, 201, 100, 101], [102, 103, 104, 105], [0, 1, 2, 3]]


def test_small_requests_about_cut_the_passes_yet_hold_every_queued_request(served_mnist) -> None:
    async def go():
        # small_pass_s so short that a cut pass is one image of each queued request
        h = Harness(
            served_mnist, engine=GatedEngine, max_batch_size=8, max_batch_delay_s=0.0, small_pass_s=1e-9
        )
        first = h.batcher.submit(items(24), ctx())
        await asyncio.sleep(0.05)
        second = h.batcher.submit(items(24, start=100), ctx())
        small = h.batcher.submit(items(1, start=1000), ctx())  # came in during the first pass
        h.engine.gate.set()
        await asyncio.gather(*first, *second, *small)
        await h.close()
        return h.engine.seeds

    seeds = asyncio.run(go())
    # Pass 2: one image of each of the three requests; pass 3 (the small request came in during
    # the pass before): one of each of the two left; then, with no small request about, full passes.
    assert [len(p) for p in seeds[:4]] == [8, 3, 2, 8] and 1000 in seeds[1]
    assert sum(len(p) for p in seeds) == 49
