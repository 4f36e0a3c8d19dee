"""What each caller (API key, or client address) may queue, and what it got: an image rate (a token
bucket of `burst` images refilled at `rate` a second), a cap on its images waiting or computing at
once over every model and operation, and its metrics (images computed, refused, queued).

A request is checked when it first submits images and is refused whole over either limit (429
with a Retry-After saying when it would fit). Its later submissions (a cascade's later stages) are
counted without a check, the bucket going into debt, so no request is cut off halfway by its own
caller's limits.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import RateLimited, TooManyQueued
from ..http.callers import Caller
from ..metrics import Metrics

# Accounts of callers at rest (nothing queued, a full bucket) are forgotten once there are this many
# (then twice as many as remain), so a service without keys keeps none for every address it saw.
MAX_IDLE_ACCOUNTS = 1024


@dataclass
class _Account:
    tokens: float  # images it may ask for now (negative: its debt)
    at: float  # time.monotonic() when `tokens` was brought up to date
    queued: int = 0  # its images waiting or computing
    full_at: float = 0.0  # time.monotonic() by which its bucket is full again

    def at_rest(self, now: float) -> bool:
        """Nothing queued and a full bucket: a new account would be the same."""
        return not self.queued and self.full_at <= now


class Quotas:
    """Every caller's bucket and queued images; refusals as 429 problems."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._accounts: dict[str, _Account] = {}
        self._sweep_at = MAX_IDLE_ACCOUNTS  # accounts held when the next sweep runs

    def __len__(self) -> int:
        """Callers with an account: those with images queued, or a bucket still refilling."""
        return len(self._accounts)

    def queued(self, caller: Caller) -> int:
        account = self._accounts.get(caller.id)
        return account.queued if account is not None else 0

    def check(self, caller: Caller, images: int, now: float, seconds_for: Callable[[int], float]) -> None:
        """Raise RateLimited or TooManyQueued when `caller` may not queue `images` more now.
        seconds_for(k): about how long the model takes for k images (the Retry-After of the cap)."""
        account = self._account(caller, now)
        if caller.max_queued and account.queued + images > caller.max_queued:
            excess = account.queued + images - caller.max_queued
            self.refused(caller, images, "too_many_queued")
            raise TooManyQueued(
                f"this caller has {account.queued} images waiting or computing, of at most "
                f"{caller.max_queued}; this request needs {images}. Retry after the Retry-After "
                "header's seconds.",
                headers={"Retry-After": str(max(1, math.ceil(seconds_for(excess))))},
            )
        if caller.rate and account.tokens < images:
            wait = (images - account.tokens) / caller.rate
            self.refused(caller, images, "rate_limited")
            raise RateLimited(
                f"this caller may have {caller.rate:g} images a second computed (bursts of up to "
                f"{caller.burst}); this request of {images} fits in {wait:.1f} s. Retry after the "
                "Retry-After header's seconds.",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )

    def charge(self, caller: Caller, futures: Sequence[asyncio.Future[Any]], now: float) -> None:
        """Count a submission: its images leave the bucket, and count as queued until each is done
        (computed, failed or dropped); each one computed counts as served."""
        account = self._account(caller, now)
        account.tokens -= len(futures)
        account.queued += len(futures)
        if caller.rate:
            account.full_at = now + (caller.burst - account.tokens) / caller.rate
        metrics = self.metrics.client_metrics(caller.label)
        metrics.queued.inc(len(futures))

        def done(future: asyncio.Future[Any]) -> None:
            account.queued -= 1
            metrics.queued.dec()
            if not future.cancelled() and future.exception() is None:
                metrics.images.inc()

        for future in futures:
            future.add_done_callback(done)

    def refused(self, caller: Caller, images: int, reason: str) -> None:
        self.metrics.client_metrics(caller.label).refused(reason).inc(images)

    def _account(self, caller: Caller, now: float) -> _Account:
        """The caller's account, its bucket refilled up to `now`."""
        account = self._accounts.get(caller.id)
        if account is None:
            if len(self._accounts) >= self._sweep_at:
                self._accounts = {k: a for k, a in self._accounts.items() if not a.at_rest(now)}
                self._sweep_at = max(MAX_IDLE_ACCOUNTS, 2 * len(self._accounts))
            account = self._accounts[caller.id] = _Account(tokens=caller.burst, at=now)
        elif caller.rate:
            account.tokens = min(caller.burst, account.tokens + (now - account.at) * caller.rate)
            account.at = now
        return account
