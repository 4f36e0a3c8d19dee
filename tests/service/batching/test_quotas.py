"""Each caller's token bucket and queued images, on an explicit clock: when a request fits, the
Retry-After of one that does not, debts, and the per-caller metrics."""

from __future__ import annotations

import asyncio

import pytest

from service.batching.quotas import Quotas
from service.errors import RateLimited, TooManyQueued
from service.http.callers import Caller
from service.metrics import Metrics

from ..conftest import metric_value


def no_model_time(images: int) -> float:
    return 0.0


def futures(n: int, loop: asyncio.AbstractEventLoop) -> list[asyncio.Future]:
    return [loop.create_future() for _ in range(n)]


def test_a_request_over_the_rate_is_told_when_the_bucket_holds_it() -> None:
    quotas = Quotas(Metrics(8))
    caller = Caller("key:k", "k", rate=2.0, burst=8)
    loop = asyncio.new_event_loop()
    quotas.check(caller, 8, 100.0, no_model_time)  # a full bucket: a burst of 8 goes at once
    quotas.charge(caller, futures(8, loop), 100.0)
    with pytest.raises(RateLimited) as refused:
        quotas.check(caller, 5, 100.0, no_model_time)
    assert refused.value.status == 429 and refused.value.headers["Retry-After"] == "3"  # 5 / 2 = 2.5 s
    assert "2.5 s" in refused.value.detail
    with pytest.raises(RateLimited):
        quotas.check(caller, 5, 102.4, no_model_time)  # 4.8 images back
    quotas.check(caller, 5, 102.5, no_model_time)  # 5 back: it fits
    quotas.check(caller, 8, 1000.0, no_model_time)  # never more than the burst saved up
    with pytest.raises(RateLimited):
        quotas.check(caller, 9, 1000.0, no_model_time)


def test_a_charge_without_a_check_goes_into_debt() -> None:
    quotas = Quotas(Metrics(8))
    caller = Caller("key:k", "k", rate=4.0, burst=8)
    loop = asyncio.new_event_loop()
    quotas.charge(caller, futures(8, loop), 0.0)
    quotas.charge(caller, futures(8, loop), 0.0)  # a cascade's next stage: counted, not refused
    with pytest.raises(RateLimited) as refused:
        quotas.check(caller, 4, 0.0, no_model_time)
    assert refused.value.headers["Retry-After"] == "3"  # 8 owed + 4 asked, at 4 a second


def test_queued_images_are_capped_until_they_are_done() -> None:
    metrics = Metrics(8)
    quotas = Quotas(metrics)
    caller = Caller("key:k", "k", max_queued=10, burst=64)
    loop = asyncio.new_event_loop()
    first = futures(8, loop)
    quotas.charge(caller, first, 0.0)
    with pytest.raises(TooManyQueued) as refused:
        quotas.check(caller, 4, 0.0, lambda images: 0.3 * images)  # 2 too many: about 0.6 s
    assert refused.value.status == 429 and refused.value.headers["Retry-After"] == "1"
    for f in first[:2]:
        f.set_result(None)
    loop.run_until_complete(asyncio.sleep(0))  # done callbacks run on the loop
    quotas.check(caller, 4, 0.0, no_model_time)
    assert quotas.queued(caller) == 6


def test_metrics_count_each_callers_images_by_its_name(tmp_path) -> None:
    metrics = Metrics(8)
    quotas = Quotas(metrics)
    caller = Caller("key:alice", "alice", rate=1.0, burst=4)
    loop = asyncio.new_event_loop()
    done = futures(4, loop)
    quotas.charge(caller, done, 0.0)
    with pytest.raises(RateLimited):
        quotas.check(caller, 3, 0.0, no_model_time)
    text = metrics.render().decode()
    assert metric_value(text, "vae_client_queued_images", client="alice") == 4
    done[0].set_result(None)
    done[1].set_exception(RuntimeError("failed"))
    done[2].cancel()
    done[3].set_result(None)
    loop.run_until_complete(asyncio.sleep(0))
    assert done[1].exception() is not None
    text = metrics.render().decode()
    assert metric_value(text, "vae_client_images_total", client="alice") == 2  # computed ones only
    assert metric_value(text, "vae_client_refused_images_total", client="alice", reason="rate_limited") == 3
    assert metric_value(text, "vae_client_queued_images", client="alice") == 0


def test_accounts_at_rest_are_forgotten() -> None:
    quotas = Quotas(Metrics(8))
    loop = asyncio.new_event_loop()
    busy = Caller("address:192.0.2.1", "open", rate=10.0, burst=8)
    quotas.charge(busy, futures(1, loop), 0.0)  # never done: its account stays
    for i in range(2000):  # a service without keys sees many addresses, each once
        caller = Caller(f"address:10.0.{i // 256}.{i % 256}", "open", rate=10.0, burst=8)
        quotas.check(caller, 1, float(i), no_model_time)
        done = futures(1, loop)
        quotas.charge(caller, done, float(i))
        done[0].set_result(None)
        loop.run_until_complete(asyncio.sleep(0))
    assert len(quotas) < 1100  # swept when there were 1024: those full again by then went
    assert quotas.queued(busy) == 1
